//! How an attempt is recorded: a run a dead worker left open is closed as abandoned and
//! the next attempt, unchanged, is recorded whole at its end; a listing slower than the
//! grace before recording shows the sync running while it lasts. A dead worker's job
//! handed on before its lock or its host slot can be taken over is synced once they can,
//! with workers alone (no scheduler's reaper).

use std::time::Duration;

use stasis_shared::domain::{JobState, RunOutcome, SyncReason, SyncStatus};
use stasis_shared::git::url::upstream_host;
use stasis_shared::liveness;
use stasis_shared::lock::Leases;
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use stasis_worker::slots::Slots;
use uuid::Uuid;

use crate::{set_upstream, WAIT};

/// A mirror served by `git daemon`, imported by a worker that has stopped since.
async fn imported(env: &TestEnv) -> (Upstream, GitDaemon, Uuid) {
    let served = env.dir.path().join("served");
    let up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("uma", false).await;
    let repo = env.mirror(&owner, "up", &daemon.url("up")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    worker.stop().await;
    (up, daemon, repo)
}

/// The job `repo` is syncing now, as recorded by a worker `gone` that has died: running,
/// with its run open.
async fn left_running_by_a_dead_worker(env: &TestEnv, repo: Uuid) -> Uuid {
    let job = env.enqueue(repo, SyncReason::Scheduled).await;
    sqlx::query(
        "UPDATE sync_jobs SET state = 'running', attempts = 1, worker = 'gone' WHERE id = $1",
    )
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker) VALUES ($1, $2, 1, 'gone')",
    )
    .bind(repo)
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
    job
}

/// As [`left_running_by_a_dead_worker`], but `gone` died just now: its liveness key
/// lives on for `window`.
async fn left_running_by_a_dying_worker(env: &TestEnv, repo: Uuid, window: Duration) -> Uuid {
    let job = left_running_by_a_dead_worker(env, repo).await;
    let key = liveness::key(&env.cfg.queue.namespace, "gone");
    liveness::beat(&env.redis, &key, window).await.unwrap();
    job
}

/// A job synced by a worker other than `gone` in a second attempt, its first abandoned.
async fn synced_after_the_dead_worker(env: &TestEnv, job: Uuid) {
    let done = env.finished(job, WAIT).await;
    assert_eq!(
        (done.state.as_str(), done.attempts),
        ("done", 2),
        "{done:?}"
    );
    assert_ne!(done.worker.as_deref(), Some("gone"));
    let runs = env.runs(job).await;
    assert_eq!(runs[0].outcome, Some(RunOutcome::Abandoned), "{runs:?}");
    assert_eq!(runs.last().unwrap().outcome, Some(RunOutcome::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_workers_job_delivered_while_its_lock_cannot_be_taken_over_yet_is_synced() {
    let env = TestEnv::new().await;
    let (_up, _daemon, repo) = imported(&env).await;
    let window = Duration::from_secs(2);
    let job = left_running_by_a_dying_worker(&env, repo, window).await;
    // its lock, held for far longer than the liveness window: only a takeover frees it
    let leases = Leases::for_worker(env.redis.clone(), &env.cfg.queue.namespace, "gone");
    let fence = env.repo(repo).await.sync_fence;
    leases
        .try_acquire(&leases.repo_key(repo), Duration::from_secs(600), fence)
        .await
        .unwrap()
        .expect("the lock is free");
    // the delivery arrives at once, while the holder still looks alive
    let worker = env.spawn_worker();
    synced_after_the_dead_worker(&env, job).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_workers_job_delivered_while_its_host_slot_is_still_held_is_synced() {
    let mut env = TestEnv::new().await;
    let (_up, daemon, repo) = imported(&env).await;
    env.cfg.sync.max_per_host = 1;
    let window = Duration::from_secs(2);
    let job = left_running_by_a_dying_worker(&env, repo, window).await;
    // the dead worker's slot fills the host's cap until its liveness key expires; its
    // lock is free (it had lapsed), so the delivery takes it and then waits for the slot
    let slots = Slots::new(env.redis.clone(), &env.cfg.queue.namespace, 0, 1).for_worker("gone");
    let held = slots
        .try_acquire(&upstream_host(&daemon.url("up")), Duration::from_secs(600))
        .await
        .unwrap();
    assert!(held.is_some_and(|slot| slot.holds_any()));
    let worker = env.spawn_worker();
    synced_after_the_dead_worker(&env, job).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_left_open_by_a_dead_worker_is_abandoned_and_the_unchanged_retry_recorded_whole() {
    let env = TestEnv::new().await;
    let (_up, _daemon, repo) = imported(&env).await;
    let fence = env.repo(repo).await.sync_fence;

    let job = left_running_by_a_dead_worker(&env, repo).await;
    let worker = env.spawn_worker();
    synced_after_the_dead_worker(&env, job).await;
    let runs = env.runs(job).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let run = &runs[1];
    assert!(run.unchanged && run.attempt == 2, "{run:?}");
    assert_eq!(run.outcome, Some(RunOutcome::Success));
    assert!(
        run.finished_at.is_some_and(|end| end >= run.started_at),
        "the run spans the attempt: {run:?}"
    );
    let after = env.repo(repo).await;
    assert!(after.sync_fence > fence, "the lease's fence is recorded");
    assert_eq!(after.sync_status, SyncStatus::Success);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_slower_than_the_grace_shows_the_sync_running_while_it_lasts() {
    let env = TestEnv::new().await;
    let (_up, daemon, repo) = imported(&env).await;
    let slow = ThrottledProxy::start(daemon.port, 200).await;
    set_upstream(&env, repo, &slow.url("up")).await;
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let running = eventually("the slow sync shown running", WAIT, || async {
        let job = env.job(job).await;
        (job.state == JobState::Running).then_some(job)
    })
    .await;
    assert!(
        running.worker.is_some() && running.attempts == 1,
        "{running:?}"
    );
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Syncing);
    let done = env.finished(job, WAIT).await;
    assert_eq!(
        (done.state.as_str(), done.attempts),
        ("done", 1),
        "{done:?}"
    );
    // nothing new: once ended, the check is counted in the import's run
    let runs = env.runs(job).await;
    assert!(runs.len() == 1 && runs[0].checks == 2, "{runs:?}");
    assert_eq!(Some(runs[0].last_checked_at), done.started_at, "{runs:?}");
    worker.stop().await;
}
