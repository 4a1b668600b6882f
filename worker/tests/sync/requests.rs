//! An accepted request is never lost: a sync asked for while the mirror's sync is running
//! (after it listed the upstream's refs) gets one follow-up sync after it, however many
//! requests arrive, so the mirror ends at least as new as the upstream was at the last
//! request.

use std::time::Duration;

use stasis_shared::db::coalesce::Window;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

use crate::WAIT;

async fn jobs_of(env: &TestEnv, repo: Uuid) -> Vec<(Uuid, String, String)> {
    sqlx::query_as(
        "SELECT id, reason, state FROM sync_jobs WHERE repo_id = $1 ORDER BY enqueued_at",
    )
    .bind(repo)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

/// How many jobs the mirror has had: those still kept and those its runs name (a done
/// job goes once the mirror's next run of its own is written).
async fn jobs_ever(env: &TestEnv, repo: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT id) FROM (
             SELECT id FROM sync_jobs WHERE repo_id = $1
             UNION ALL SELECT job_id FROM sync_runs WHERE repo_id = $1) jobs",
    )
    .bind(repo)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_during_a_running_sync_get_one_follow_up_that_brings_the_newer_commit() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    // the advertisement is a few hundred bytes; a 400 kB commit takes seconds to pass
    let proxy = ThrottledProxy::start(daemon.port, 100_000).await;
    let (owner, _) = env.user("alice", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);

    // c1: a slow sync starts and lists the upstream's refs
    up.add_blob("large.bin", 400_000);
    let job_service = env.jobs();
    let first = job_service
        .request_within(repo, SyncReason::Manual, Window::None)
        .await
        .unwrap()
        .unwrap();
    assert!(first.created);
    eventually("the sync to be running", WAIT, || async {
        (env.job(first.job_id).await.state == JobState::Running).then_some(())
    })
    .await;
    // well past the listing, well before the pack has passed the proxy
    tokio::time::sleep(Duration::from_millis(500)).await;

    // c2 lands upstream while the sync runs; "Sync now" and webhooks ask for it
    up.commit("pushed during the sync");
    for reason in [SyncReason::Manual, SyncReason::Webhook, SyncReason::Manual] {
        let again = job_service
            .request_within(repo, reason, Window::None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.job_id, first.job_id, "the running job answers");
        assert!(!again.created);
        assert!(again.follow_up, "a follow-up is owed: {again:?}");
    }
    assert_eq!(env.finished(first.job_id, WAIT).await.state, JobState::Done);

    let follow_up = eventually("one follow-up job", WAIT, || async {
        let jobs = jobs_of(&env, repo).await;
        jobs.into_iter()
            .find(|(id, _, _)| *id != import && *id != first.job_id)
    })
    .await;
    assert_eq!(follow_up.1, "manual", "the latest request's reason");
    assert_eq!(env.finished(follow_up.0, WAIT).await.state, JobState::Done);
    assert_mirrors(&env.mirror_path("alice", "up"), &up);
    assert_eq!(
        jobs_ever(&env, repo).await,
        3,
        "the import, the first sync and one follow-up however many requests"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_while_the_job_is_pending_is_absorbed_by_it() {
    let env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("alice", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let job_service = env.jobs();
    // no worker: the job stays pending, and a pending job has yet to list any refs
    let first = job_service
        .request_within(repo, SyncReason::Manual, Window::None)
        .await
        .unwrap()
        .unwrap();
    let again = job_service
        .request_within(repo, SyncReason::Webhook, Window::None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.job_id, first.job_id);
    assert!(!again.follow_up, "{again:?}");

    let worker = env.spawn_worker();
    assert_eq!(env.finished(first.job_id, WAIT).await.state, JobState::Done);
    worker.stop().await;
    assert_eq!(jobs_ever(&env, repo).await, 1, "no follow-up was owed");
    assert_mirrors(&env.mirror_path("alice", "up"), &up);
}
