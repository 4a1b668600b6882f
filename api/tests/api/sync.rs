//! A mirror's syncs through the API: the import's status, "Sync now" (who may, and
//! requests sharing one job), with a real worker where a sync must run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use stasis_testkit::git::{assert_mirrors, free_port};
use stasis_testkit::{eventually, TestEnv};

use crate::common::{Api, Users};
use crate::{site, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_mirror_syncs_and_its_status_says_so() {
    let s = site().await;
    let worker = s.env.spawn_worker();
    let synced = s.synced_mirror().await;
    for field in [
        "is_mirror",
        "mirror_url",
        "last_synced_at",
        "sync_status",
        "sync_state",
        "last_attempt_at",
        "sync_error",
        "next_sync_at",
        "last_duration_ms",
        "lfs_missing_objects",
        "job_id",
        "job",
    ] {
        assert!(
            synced.get(field).is_some(),
            "status lacks {field}: {synced}"
        );
    }
    assert_eq!(synced["sync_error"], "");
    assert_mirrors(&s.env.mirror_path("alice", "up"), &s.up);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_and_admins_may_sync_now_others_may_not_and_requests_share_a_job() {
    let mut s = site().await;
    let worker = s.env.spawn_worker();
    s.synced_mirror().await;
    // the requests below meet no worker, so the second finds the first one's job pending
    worker.stop().await;

    s.up.commit("new upstream work");
    let (status, body) = s
        .api
        .call(
            "POST",
            "/api/v1/repos/alice/up/sync",
            Some(&s.mallory),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, first) = s
        .api
        .call("POST", "/api/v1/repos/alice/up/sync", Some(&s.alice), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["message"], "Mirror sync started");
    // the public status, and beside it the full state: waiting for a worker
    assert_eq!(
        (&first["status"], &first["sync_state"]),
        (&json!("syncing"), &json!("queued")),
        "{first}"
    );
    assert!(first["job_id"].is_string(), "{first}");
    let (status, again) = s
        .api
        .call("POST", "/api/v1/repos/alice/up/sync", Some(&s.admin), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        again["job_id"], first["job_id"],
        "a second job while one was pending"
    );
    assert_eq!(
        (&again["message"], &again["status"]),
        (
            &json!("Mirror sync already queued or in progress"),
            &json!("syncing")
        ),
        "{again}"
    );
    let worker = s.env.spawn_worker();
    eventually("the manual sync", WAIT, || async {
        let (_, body) = s
            .api
            .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
            .await;
        (body["sync_status"] == "success" && body["job_id"].is_null()).then_some(())
    })
    .await;
    assert_mirrors(&s.env.mirror_path("alice", "up"), &s.up);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_sync_now_requests_gets_one_job_and_one_delivery() {
    let env = stasis_testkit::TestEnv::new().await;
    let api = std::sync::Arc::new(Api::start(&env).await);
    let Users { owner, alice, .. } = Users::create(&env).await;
    let repo = env
        .mirror(&owner, "hot", "https://example.com/hot.git")
        .await;
    // no worker: every request after the first finds the job pending
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (api, alice) = (api.clone(), alice.clone());
        requests.spawn(async move {
            api.call("POST", "/api/v1/repos/alice/hot/sync", Some(&alice), None)
                .await
        });
    }
    let mut jobs = std::collections::BTreeSet::new();
    while let Some(answer) = requests.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        jobs.insert(body["job_id"].as_str().map(str::to_owned));
    }
    assert_eq!(jobs.len(), 1, "one job for all: {jobs:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE repo_id = $1")
        .bind(repo)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(env.waiting_deliveries().await, 1, "one delivery in Redis");
}

/// A mirror between two attempts of a failing sync: the public `syncing`, and beside
/// it what an owner needs to know (attempt n of m, when the next one runs, why the last
/// one failed), not merely "queued".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_mirror_shows_its_attempts_next_retry_and_last_error() {
    let mut env = TestEnv::new().await;
    env.cfg.sync.retry_base_delay = Duration::from_secs(3600);
    env.cfg.sync.retry_max_delay = Duration::from_secs(7200);
    let api = Api::start(&env).await;
    let Users { alice, .. } = Users::create(&env).await;
    let url = format!("git://127.0.0.1:{}/gone.git", free_port());
    let body = json!({ "name": "gone", "clone_url": url, "mirror": true });
    let (status, answer) = api
        .call("POST", "/api/v1/repos/import", Some(&alice), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let _worker = env.spawn_worker();

    let shown = eventually("the first attempt to fail", WAIT, || async {
        let (_, s) = api
            .call(
                "GET",
                "/api/v1/repos/alice/gone/mirror/status",
                Some(&alice),
                None,
            )
            .await;
        (s["job"]["attempts"] == 1 && s["job"]["state"] == "pending").then_some(s)
    })
    .await;
    assert_eq!(
        (&shown["sync_status"], &shown["sync_state"]),
        (&json!("syncing"), &json!("queued")),
        "{shown}"
    );
    assert_eq!(
        shown["job"]["max_attempts"], env.cfg.sync.max_attempts,
        "{shown}"
    );
    let retry_at: DateTime<Utc> = shown["job"]["run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        retry_at > Utc::now() + chrono::Duration::minutes(30),
        "next retry after the backoff: {shown}"
    );
    assert!(
        shown["job"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{shown}"
    );
    assert!(shown["last_attempt_at"].is_string(), "{shown}");
    assert!(shown["last_synced_at"].is_null(), "never synced: {shown}");
    assert_eq!(shown["job_id"], shown["job"]["id"]);
}

/// A Git LFS object the upstream served corrupt is counted in the mirror's status; once
/// the upstream is healed, the owner's `?lfs_retry=true` brings it at once, however long
/// its backoff has left, and the count goes back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_counts_missing_lfs_objects_until_a_requested_retry_brings_them() {
    use stasis_testkit::http::GitHttpServer;
    use stasis_testkit::lfs::{commit_lfs_file, objects_dir};

    let mut env = TestEnv::new().await;
    env.cfg.lfs.retry_base_delay = Duration::from_secs(3600);
    let root = env.dir.path().join("upstreams");
    let up = stasis_testkit::git::Upstream::create(root.join("r.git"));
    let server = GitHttpServer::start(&root);
    server.serve_lfs(&objects_dir(&up));
    let oid = commit_lfs_file(&up, "big.bin", &[7u8; 3000]);
    server.lfs_tamper(&oid, &[8u8; 3000]);
    let (alice, token) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "r", &server.url("r.git")).await;
    let api = Api::start(&env).await;
    let worker = env.spawn_worker();
    let import = env
        .enqueue(repo, stasis_shared::domain::SyncReason::Import)
        .await;
    env.finished(import, WAIT).await;
    let body = lfs_status(&api).await;
    assert_eq!(body["sync_status"], "success", "{body}");
    assert_eq!(body["lfs_missing_objects"], 1, "{body}");

    server.lfs_heal(&oid);
    let (code, body) = api
        .call(
            "POST",
            "/api/v1/repos/alice/r/sync?lfs_retry=true",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let job: uuid::Uuid = body["job_id"].as_str().unwrap().parse().unwrap();
    env.finished(job, WAIT).await;
    let body = lfs_status(&api).await;
    assert_eq!(body["lfs_missing_objects"], 0, "{body}");
    let object = env
        .mirror_path("alice", "r")
        .join("lfs/objects")
        .join(&oid[0..2])
        .join(&oid[2..4])
        .join(&oid);
    assert!(object.is_file());
    worker.stop().await;
}

async fn lfs_status(api: &Api) -> serde_json::Value {
    let (code, body) = api
        .call("GET", "/api/v1/repos/alice/r/mirror/status", None, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}
