//! Renaming a repository (`PATCH /repos/{owner}/{repo}` with `{"name"}`): its bare
//! mirror moves to the new name's directory and later syncs use it; a refusal (taken
//! name, bad name, a sync holding the lock) changes nothing on disk or in the row.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use stasis_shared::lock::Leases;
use stasis_testkit::git::{assert_mirrors, git, refs, Upstream};
use uuid::Uuid;

use crate::{world, World, BAD, CONFLICT, FORBIDDEN, NOT_FOUND, OK};

const WAIT: Duration = Duration::from_secs(60);

/// alice's mirror `old` of a fresh upstream, imported and synced by `worker`.
struct Synced {
    up: Upstream,
    dir: PathBuf,
    refs: BTreeMap<String, String>,
    repo_id: Uuid,
}

async fn synced(w: &World) -> Synced {
    let up = Upstream::create(w.env.dir.path().join("up-old"));
    let body = json!({ "name": "old", "clone_url": up.url(), "mirror": true });
    let (status, answer) = w
        .api
        .call("POST", "/api/v1/repos/import", Some(&w.alice), Some(body))
        .await;
    assert_eq!(status.as_u16(), 202, "{answer}");
    let repo_id: Uuid = answer["id"].as_str().unwrap().parse().unwrap();
    sync_succeeded(w, "old").await;
    let dir = w.env.mirror_path("alice", "old");
    assert_mirrors(&dir, &up);
    let refs = refs(&dir);
    Synced {
        up,
        dir,
        refs,
        repo_id,
    }
}

/// Waits until alice's `name` shows a successful sync and no job.
async fn sync_succeeded(w: &World, name: &str) {
    let path = format!("/api/v1/repos/alice/{name}/mirror/status");
    stasis_testkit::eventually("the sync to succeed", WAIT, || async {
        let (_, s) = w.api.call("GET", &path, None, None).await;
        (s["sync_status"] == "success" && s["job_id"].is_null()).then_some(())
    })
    .await;
}

async fn rename(w: &World, token: &str, name: &str) -> (u16, serde_json::Value) {
    let body = json!({ "name": name });
    let (status, answer) = w
        .api
        .call("PATCH", "/api/v1/repos/alice/old", Some(token), Some(body))
        .await;
    (status.as_u16(), answer)
}

fn assert_bare_repo(dir: &std::path::Path) {
    assert_eq!(
        git(dir, &["rev-parse", "--is-bare-repository"]).trim(),
        "true",
        "{} is not a bare repository",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_moves_the_mirror_and_the_next_sync_uses_the_new_directory() {
    let w = world().await;
    let worker = w.env.spawn_worker();
    let mut m = synced(&w).await;

    let (status, body) = rename(&w, &w.alice, "new").await;
    assert_eq!(status, OK, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["full_name"].as_str()),
        (Some("new"), Some("alice/new"))
    );
    let moved = w.env.mirror_path("alice", "new");
    assert!(!m.dir.exists(), "the old directory is still there");
    assert_bare_repo(&moved);
    assert_eq!(refs(&moved), m.refs, "the refs did not move with it");
    for old in [
        "/api/v1/repos/alice/old",
        "/api/v1/repos/alice/old/mirror/status",
    ] {
        assert_eq!(w.status("GET", old, Some(&w.alice), None).await, NOT_FOUND);
    }

    m.up.commit("after the rename");
    let (status, answer) = w
        .api
        .call("POST", "/api/v1/repos/alice/new/sync", Some(&w.alice), None)
        .await;
    assert_eq!(status.as_u16(), 202, "{answer}");
    sync_succeeded(&w, "new").await;
    assert_mirrors(&moved, &m.up);
    assert!(!m.dir.exists(), "the sync recreated the old directory");
    let checks: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(checks), 0)::bigint FROM sync_runs WHERE repo_id = $1",
    )
    .bind(m.repo_id)
    .fetch_one(&w.env.pool)
    .await
    .unwrap();
    assert_eq!(
        checks, 2,
        "the import's check and the sync's, under one repository"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_or_bad_name_or_a_stranger_is_refused_and_nothing_moves() {
    let w = world().await;
    let worker = w.env.spawn_worker();
    let m = synced(&w).await;
    worker.stop().await;
    w.import("taken", false, false).await;

    let (status, body) = rename(&w, &w.alice, "taken").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (CONFLICT, Some("conflict"))
    );
    assert!(body["error"].as_str().unwrap().contains("already exists"));
    for bad in ["bad..name", ".hidden", "x.git", "a/b", "", "é"] {
        let (status, body) = rename(&w, &w.alice, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (BAD, Some("invalid_name")),
            "{bad:?}: {body}"
        );
    }
    assert_eq!(rename(&w, &w.mallory, "mine").await.0, FORBIDDEN);
    let (status, body) = w
        .api
        .call(
            "PATCH",
            "/api/v1/repos/alice/old",
            Some(&w.alice),
            Some(json!({ "name": "x", "private": true })),
        )
        .await;
    assert!(
        matches!(status.as_u16(), 400 | 422) && body["error"].is_string(),
        "{status} {body}"
    );

    assert_eq!(refs(&m.dir), m.refs, "a refusal touched the mirror");
    for name in ["taken", "bad..name", "mine", "x"] {
        assert!(
            !w.env.mirror_path("alice", name).exists(),
            "{name}.git made"
        );
    }
    assert_eq!(
        w.status("GET", "/api/v1/repos/alice/old", Some(&w.alice), None)
            .await,
        OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_is_refused_while_a_sync_holds_the_lock() {
    let w = world().await;
    let worker = w.env.spawn_worker();
    let m = synced(&w).await;
    worker.stop().await;
    let leases = Leases::new(w.env.redis.clone(), &w.env.cfg.queue.namespace);
    let held = leases
        .try_acquire(&leases.repo_key(m.repo_id), Duration::from_secs(30), 0)
        .await
        .unwrap()
        .expect("lock taken");

    let (status, body) = rename(&w, &w.alice, "new").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (CONFLICT, Some("conflict"))
    );
    assert!(body["error"].as_str().unwrap().contains("sync"), "{body}");
    assert_eq!(refs(&m.dir), m.refs, "nothing moved while locked");
    assert!(!w.env.mirror_path("alice", "new").exists());
    assert_eq!(
        w.status("GET", "/api/v1/repos/alice/old", Some(&w.alice), None)
            .await,
        OK,
        "the row keeps its name while locked"
    );

    leases.release(&held).await.unwrap();
    let (status, body) = rename(&w, &w.root, "new").await;
    assert_eq!(
        status, OK,
        "renamed by an admin once the lock is free: {body}"
    );
    assert_eq!(refs(&w.env.mirror_path("alice", "new")), m.refs);
}
