//! Deleting a repository: its row, bare mirror, jobs and queued deliveries go, but not
//! while a sync holds its lock.

use std::path::PathBuf;
use std::time::Duration;

use stasis_shared::lock::Leases;
use uuid::Uuid;

use crate::{world, World, CONFLICT, NOT_FOUND, NO_CONTENT};

const PATH: &str = "/api/v1/repos/alice/synced";

/// alice's mirror `synced`, imported and synced by a worker that has stopped since.
async fn synced(w: &World) -> (Uuid, PathBuf) {
    let worker = w.env.spawn_worker();
    w.import("synced", true, false).await;
    let dir = w.env.mirror_path("alice", "synced");
    stasis_testkit::eventually("the import to sync", Duration::from_secs(60), || async {
        let (_, s) = w
            .api
            .call(
                "GET",
                "/api/v1/repos/alice/synced/mirror/status",
                None,
                None,
            )
            .await;
        (s["sync_status"] == "success").then_some(())
    })
    .await;
    assert!(dir.is_dir());
    worker.stop().await;
    let repo_id: Uuid = sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'synced'")
        .fetch_one(&w.env.pool)
        .await
        .unwrap();
    (repo_id, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_is_refused_while_a_sync_holds_the_lock() {
    let w = world().await;
    let (repo_id, dir) = synced(&w).await;
    let leases = Leases::new(w.env.redis.clone(), &w.env.cfg.queue.namespace);
    let held = leases
        .try_acquire(&leases.repo_key(repo_id), Duration::from_secs(30), 0)
        .await
        .unwrap()
        .expect("lock taken");
    let (status, body) = w.api.call("DELETE", PATH, Some(&w.alice), None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (CONFLICT, Some("conflict"))
    );
    assert!(dir.is_dir(), "nothing removed while locked");
    assert_eq!(
        w.status("GET", PATH, Some(&w.alice), None).await,
        crate::OK,
        "the row stays while locked"
    );
    leases.release(&held).await.unwrap();
    assert_eq!(
        w.status("DELETE", PATH, Some(&w.alice), None).await,
        NO_CONTENT,
        "deleted once the lock is released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_removes_the_row_the_mirror_and_the_jobs() {
    let w = world().await;
    let (_, dir) = synced(&w).await;
    assert_eq!(
        w.status("DELETE", PATH, Some(&w.alice), None).await,
        NO_CONTENT
    );
    assert!(!dir.exists(), "bare mirror left on disk");
    assert_eq!(w.status("GET", PATH, Some(&w.alice), None).await, NOT_FOUND);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs")
        .fetch_one(&w.env.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    assert_eq!(
        w.status("DELETE", PATH, Some(&w.alice), None).await,
        NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_s_delivery_leaves_redis_with_it_and_admins_may_delete() {
    let w = world().await;
    w.import("queued", true, false).await;
    assert_eq!(w.env.waiting_deliveries().await, 1);
    assert_eq!(
        w.status("DELETE", "/api/v1/repos/alice/queued", Some(&w.root), None)
            .await,
        NO_CONTENT
    );
    assert_eq!(w.env.waiting_deliveries().await, 0);
}
