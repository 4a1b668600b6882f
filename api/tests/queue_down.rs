//! A request whose delivery cannot reach Redis answers 503 and undoes what it recorded
//! in Postgres: a "Sync now" leaves no job behind (`lifecycle::enqueue::withdraw`), an operator's retry
//! puts the job back as it was (`lifecycle::operator::restore`). Either way the mirror is not left
//! `queued` behind a job nobody will run, and once Redis is back the same request
//! goes through. Each test runs on a Redis of its own, which it stops.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use stasis_shared::domain::{JobState, SyncReason, SyncStatus};
use stasis_testkit::git::Upstream;
use stasis_testkit::services::PrivateRedis;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

mod common;

use common::Api;

const WAIT: Duration = Duration::from_secs(60);

async fn jobs_of(env: &TestEnv, repo: Uuid) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT id, state FROM sync_jobs WHERE repo_id = $1 ORDER BY enqueued_at")
        .bind(repo)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

/// Repeats the request until Redis, restarted, takes its delivery (the connection
/// manager reconnects within a couple of seconds).
async fn once_redis_is_back(api: &Api, path: &str, token: &str) -> Value {
    eventually("the request to go through again", WAIT, || async {
        let (status, body) = api.call("POST", path, Some(token), None).await;
        (status == StatusCode::ACCEPTED).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_now_whose_push_fails_leaves_no_job_and_the_mirror_as_it_was() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let api = Api::start(&env).await;
    let (owner, token) = env.user("alice", false).await;
    let up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "m", &up.url()).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    worker.stop().await;
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Success);

    redis.kill();
    let path = "/api/v1/repos/alice/m/sync";
    let (status, body) = api.call("POST", path, Some(&token), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    assert_eq!(
        jobs_of(&env, repo).await,
        [(import, "done".to_owned())],
        "a job was left behind without a delivery"
    );
    assert_eq!(
        env.repo(repo).await.sync_status,
        SyncStatus::Success,
        "the mirror was left queued"
    );

    redis.start_again();
    let accepted = once_redis_is_back(&api, path, &token).await;
    let jobs = jobs_of(&env, repo).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[1].1, "pending");
    assert_eq!(accepted["job_id"], jobs[1].0.to_string(), "{accepted}");
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Queued);
    assert_eq!(env.waiting_deliveries().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_whose_push_fails_leaves_the_job_failed_and_the_mirror_as_it_was() {
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
    let (status, body) = api.call("POST", &path, Some(&root), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    let after = env.job(job).await;
    assert_eq!(
        (after.state.as_str(), after.attempts),
        ("failed", 1),
        "the job was left pending without a delivery"
    );
    assert!(after.finished_at.is_some(), "{after:?}");
    assert_eq!(
        env.repo(repo).await.sync_status,
        SyncStatus::HardFailed,
        "the mirror was left queued"
    );

    redis.start_again();
    once_redis_is_back(&api, &path, &root).await;
    assert_eq!(env.job(job).await.state, JobState::Pending);
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Queued);
    assert_eq!(env.waiting_deliveries().await, 1);
}
