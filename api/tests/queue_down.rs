//! Redis down does not lose an accepted request: Postgres is the record, so a "Sync
//! now", an import or an operator's retry made while Redis is unreachable is recorded,
//! answered 202 in seconds with the job shown waiting for the queue, and delivered by
//! the dispatcher once Redis is back. Each test runs on a Redis of its own, which it
//! stops.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_shared::domain::{JobState, SyncReason, SyncStatus};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::services::PrivateRedis;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

mod common;

use common::Api;

const WAIT: Duration = Duration::from_secs(60);
/// An answer while a backend is down comes within this.
const PROMPT: Duration = Duration::from_secs(2);

async fn jobs_of(env: &TestEnv, repo: Uuid) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT id, state FROM sync_jobs WHERE repo_id = $1 ORDER BY enqueued_at")
        .bind(repo)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

async fn timed(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let began = Instant::now();
    let answer = api.call(method, path, Some(token), body).await;
    assert!(
        began.elapsed() < PROMPT,
        "{method} {path} took {:?} with Redis down",
        began.elapsed()
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_now_while_redis_is_down_is_recorded_and_runs_once_it_is_back() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let api = Api::start(&env).await;
    let (owner, token) = env.user("alice", false).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "m", &up.url()).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    worker.stop().await;

    redis.kill();
    up.commit("while redis was down");
    let path = "/api/v1/repos/alice/m/sync";
    let (status, body) = timed(&api, "POST", path, &token, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["waiting_for_queue"], true, "{body}");
    let jobs = jobs_of(&env, repo).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[1].1, "pending");
    assert_eq!(body["job_id"], jobs[1].0.to_string(), "{body}");
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Queued);
    let (status, shown) = timed(
        &api,
        "GET",
        "/api/v1/repos/alice/m/mirror/status",
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["job"]["waiting_for_queue"], true, "{shown}");

    redis.start_again();
    let worker = env.spawn_worker();
    assert_eq!(env.finished(jobs[1].0, WAIT).await.state, JobState::Done);
    worker.stop().await;
    assert_mirrors(&env.mirror_path("alice", "m"), &up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_while_redis_is_down_records_repository_and_job_together() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let api = Api::start(&env).await;
    let (_, token) = env.user("alice", false).await;
    let up = Upstream::create(env.dir.path().join("up"));
    redis.kill();
    let (status, body) = timed(
        &api,
        "POST",
        "/api/v1/repos/import",
        &token,
        Some(json!({ "name": "m", "clone_url": up.url(), "mirror": true })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let repo: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let jobs = jobs_of(&env, repo).await;
    assert_eq!(
        jobs.len(),
        1,
        "the import job is recorded with its repository"
    );
    assert_eq!(jobs[0].1, "pending");

    redis.start_again();
    let worker = env.spawn_worker();
    assert_eq!(env.finished(jobs[0].0, WAIT).await.state, JobState::Done);
    worker.stop().await;
    assert_mirrors(&env.mirror_path("alice", "m"), &up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_while_redis_is_down_is_recorded_and_delivered_once_it_is_back() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let api = Api::start(&env).await;
    let (owner, _) = env.user("alice", false).await;
    let (_, root) = env.user("root", true).await;
    // a missing upstream fails at once and for good
    let repo = env
        .mirror(&owner, "m", "file:///nonexistent/stasis/queue-down.git")
        .await;
    let worker = env.spawn_worker();
    let job = env.enqueue(repo, SyncReason::Manual).await;
    let failed = env.finished(job, WAIT).await;
    assert_eq!((failed.state.as_str(), failed.attempts), ("failed", 1));
    worker.stop().await;
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::HardFailed);

    redis.kill();
    let path = format!("/api/v1/admin/jobs/{job}/retry");
    let (status, body) = timed(&api, "POST", &path, &root, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(env.job(job).await.state, JobState::Pending);
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Queued);
    assert_eq!(
        stasis_shared::db::waiting::count(&env.pool)
            .await
            .unwrap()
            .due,
        1,
        "the retried job waits in Postgres for its delivery"
    );

    redis.start_again();
    eventually(
        "the dispatcher to deliver the retried job",
        WAIT,
        || async { env.jobs().dispatch().await.ok().filter(|n| *n == 1) },
    )
    .await;
    assert_eq!(env.waiting_deliveries().await, 1);
}
