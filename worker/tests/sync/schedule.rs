//! The schedule a sync leaves behind: intervals stretch while the upstream is unchanged,
//! failures back off and then stop the schedule, and a new upstream URL resumes it.

use std::time::Duration;

use stasis_shared::db::repos::{self, MirrorSettings};
use stasis_shared::db::runs::Run;
use stasis_shared::domain::{JobState, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::git::{free_port, Upstream};
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::{set_upstream, WAIT};

/// Base interval 1000 s, stretched to at most 2000 s; two failures in a row stop the
/// schedule; no retries, so each sync is one attempt.
async fn scheduled_env() -> TestEnv {
    let mut env = TestEnv::new().await;
    env.cfg.mirror.sync_interval = Duration::from_secs(1000);
    env.cfg.mirror.max_sync_interval = Duration::from_secs(2000);
    env.cfg.mirror.hard_fail_after = 2;
    env.cfg.sync.max_attempts = 1;
    env
}

async fn schedule_of(env: &TestEnv, repo: Uuid) -> (f64, i32, Option<f64>) {
    sqlx::query_as(
        "SELECT interval_factor, consecutive_failures,
                EXTRACT(EPOCH FROM next_sync_at - now())::float8
         FROM repositories WHERE id = $1",
    )
    .bind(repo)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

async fn sync(env: &TestEnv, repo: Uuid, reason: SyncReason) -> Run {
    let job = env.enqueue(repo, reason).await;
    let finished = env.finished(job, WAIT).await;
    env.runs(finished.id).await.pop().expect("a run")
}

async fn sync_state(env: &TestEnv, repo: Uuid, reason: SyncReason) -> JobState {
    let job = env.enqueue(repo, reason).await;
    env.finished(job, WAIT).await.state
}

fn near(secs: Option<f64>, want: f64) {
    let secs = secs.expect("scheduled");
    assert!(
        (want * 0.85..=want * 1.15).contains(&secs),
        "next sync in {secs}s, not ~{want}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intervals_stretch_while_unchanged_up_to_the_cap_and_a_change_restores_the_base() {
    let env = scheduled_env().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("judy", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let worker = env.spawn_worker();

    // a change keeps the base interval; each unchanged sync stretches it by half, capped
    sync(&env, repo, SyncReason::Import).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 1.0);
    near(next, 1000.0);
    sync(&env, repo, SyncReason::Scheduled).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 1.5);
    near(next, 1500.0);
    for _ in 0..2 {
        sync(&env, repo, SyncReason::Scheduled).await;
    }
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 2.0, "capped at max_sync_interval / base");
    near(next, 2000.0);
    up.commit("news");
    sync(&env, repo, SyncReason::Scheduled).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(
        factor, 1.0,
        "a change halves the stretch back toward the base"
    );
    near(next, 1000.0);
    worker.stop().await;
}

/// An imported mirror whose upstream then goes away (connections refused).
async fn mirror_gone_after_import(env: &TestEnv) -> (Upstream, Uuid) {
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("judy", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    assert_eq!(
        sync_state(env, repo, SyncReason::Import).await,
        JobState::Done
    );
    let gone = format!("git://127.0.0.1:{}/up", free_port());
    set_upstream(env, repo, &gone).await;
    (up, repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_backs_off_and_the_next_in_a_row_stops_the_schedule() {
    let env = scheduled_env().await;
    let worker = env.spawn_worker();
    let (_up, repo) = mirror_gone_after_import(&env).await;

    assert_eq!(
        sync_state(&env, repo, SyncReason::Scheduled).await,
        JobState::Failed
    );
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("failed", 1)
    );
    near(next, 1000.0);
    assert_eq!(
        sync_state(&env, repo, SyncReason::Scheduled).await,
        JobState::Failed
    );
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("hard_failed", 2)
    );
    assert_eq!(next, None, "no longer scheduled");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_upstream_url_resumes_a_stopped_schedule_and_a_good_sync_clears_the_failures() {
    let env = scheduled_env().await;
    let worker = env.spawn_worker();
    let (up, repo) = mirror_gone_after_import(&env).await;
    for _ in 0..2 {
        assert_eq!(
            sync(&env, repo, SyncReason::Scheduled).await.outcome,
            Some(RunOutcome::Failed)
        );
    }
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::HardFailed);

    repos::update_mirror(
        &env.pool,
        repo,
        &MirrorSettings {
            upstream: Some(up.url()),
            credentials: Some(None),
            ..Default::default()
        },
        env.cfg.mirror.sync_interval,
    )
    .await
    .unwrap();
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("failed", 0)
    );
    assert!(next.expect("due") <= 0.5, "due now");
    assert_eq!(
        sync_state(&env, repo, SyncReason::Manual).await,
        JobState::Done
    );
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Success);
    worker.stop().await;
}
