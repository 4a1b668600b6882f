//! Each transition of a sync job's life (the table in `stasis_shared::domain::lifecycle`) against
//! a real Postgres: what it does to the job's state, the repository's `sync_status` and
//! the job's place in its lane (`in_queue`), and what it refuses.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use stasis_shared::db::coalesce::{self, Window};
use stasis_shared::db::runs;
use stasis_shared::db::waiting;
use stasis_shared::domain::lifecycle::attempt::{
    self, Attempt, Finish, Finished, RunStats, Started,
};
use stasis_shared::domain::lifecycle::opening::{self, Opened};
use stasis_shared::domain::lifecycle::operator::{self, Refused};
use stasis_shared::domain::lifecycle::policy::{End, Limits, Outcome};
use stasis_shared::domain::lifecycle::rescue;
use stasis_shared::domain::{ErrorKind, JobState, Lane, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

/// An upstream nobody fetches: these tests write the lifecycle's statements directly.
const URL: &str = "file:///nonexistent/upstream";

struct Fixture {
    env: TestEnv,
    repo: Uuid,
}

impl Fixture {
    async fn new() -> Self {
        let env = TestEnv::new().await;
        let (owner, _) = env.user("ann", false).await;
        let repo = env.mirror(&owner, "m", URL).await;
        Fixture { env, repo }
    }

    fn pool(&self) -> &PgPool {
        &self.env.pool
    }

    /// A pending job for the mirror through `opening::open`.
    async fn open(&self, reason: SyncReason) -> Uuid {
        open(self.pool(), self.repo, reason).await
    }

    async fn status(&self) -> SyncStatus {
        self.env.repo(self.repo).await.sync_status
    }

    async fn start(&self, job: Uuid, fence: i64) -> Option<Started> {
        attempt::start(self.pool(), &attempt_of(job, self.repo, fence))
            .await
            .expect("start")
    }

    async fn finish(
        &self,
        job: Uuid,
        fence: i64,
        started: Option<Started>,
        outcome: Outcome,
        allowed: i32,
    ) -> Finished {
        let stats = RunStats {
            unchanged: matches!(outcome, Outcome::Success { unchanged: true }),
            list_ms: Some(7),
            ..RunStats::default()
        };
        self.finish_with(job, fence, started, outcome, allowed, stats)
            .await
    }

    /// [`Self::finish`] with the run's figures given.
    async fn finish_with(
        &self,
        job: Uuid,
        fence: i64,
        started: Option<Started>,
        outcome: Outcome,
        allowed: i32,
        stats: RunStats,
    ) -> Finished {
        let error = match outcome {
            Outcome::Failure { .. } => Some("upstream failed"),
            Outcome::Interrupted => Some("worker shutting down"),
            Outcome::Success { .. } => None,
        };
        let error_kind = match outcome {
            Outcome::Failure { kind } => Some(kind),
            _ => None,
        };
        let cfg = &self.env.cfg;
        let mut attempt = attempt_of(job, self.repo, fence);
        if started.is_some() {
            // the worker ends an attempt with the start it recorded
            attempt.started_at = self.env.job(job).await.started_at.expect("started");
        }
        let f = Finish {
            attempt,
            started,
            outcome,
            allowed,
            error,
            error_kind,
            duration: Duration::from_millis(10),
            stats,
            default_interval: cfg.mirror.sync_interval,
            limits: Limits {
                max_interval: cfg.mirror.max_sync_interval,
                hard_fail_after: cfg.mirror.hard_fail_after,
                retry_base: cfg.sync.retry_base_delay,
                retry_max: cfg.sync.retry_max_delay,
            },
            repo_name: "ann/m",
            notify_urls: &[],
            max_attempts: cfg.sync.max_attempts as i32,
        };
        attempt::finish(self.pool(), &f).await.expect("finish")
    }

    /// A job that ran once and failed for good (one attempt allowed).
    async fn failed_job(&self) -> Uuid {
        let job = self.open(SyncReason::Manual).await;
        let started = self.start(job, 1).await.expect("started");
        let failure = Outcome::Failure {
            kind: ErrorKind::Network,
        };
        let finished = self.finish(job, 1, Some(started), failure, 1).await;
        assert!(
            matches!(finished.end, Some(End::Failed { .. })),
            "{finished:?}"
        );
        job
    }
}

fn attempt_of(job_id: Uuid, repo_id: Uuid, fence: i64) -> Attempt<'static> {
    Attempt {
        job_id,
        repo_id,
        worker: "w1",
        fence,
        started_at: Utc::now(),
    }
}

async fn open(pool: &PgPool, repo: Uuid, reason: SyncReason) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let opened = opening::open(&mut tx, repo, reason, 3).await.unwrap();
    tx.commit().await.unwrap();
    opened.expect("repository exists").job_id()
}

/// What the lifecycle moves of a job: its state, whether a lane holds it, and whether
/// it is due.
#[derive(Debug, PartialEq, Eq)]
struct JobRow {
    state: JobState,
    in_queue: bool,
    due: bool,
    attempts: i32,
}

async fn job_row(pool: &PgPool, job: Uuid) -> Option<JobRow> {
    let row: Option<(JobState, bool, bool, i32)> = sqlx::query_as(
        "SELECT state, in_queue, run_at <= now(), attempts FROM sync_jobs WHERE id = $1",
    )
    .bind(job)
    .fetch_optional(pool)
    .await
    .unwrap();
    row.map(|(state, in_queue, due, attempts)| JobRow {
        state,
        in_queue,
        due,
        attempts,
    })
}

async fn job(pool: &PgPool, job: Uuid) -> JobRow {
    job_row(pool, job).await.expect("job exists")
}

async fn run_outcomes(env: &TestEnv, job: Uuid) -> Vec<Option<RunOutcome>> {
    env.runs(job).await.into_iter().map(|r| r.outcome).collect()
}

async fn set_next_sync(pool: &PgPool, repo: Uuid, in_secs: f64) {
    sqlx::query(
        "UPDATE repositories SET next_sync_at = now() + make_interval(secs => $2) WHERE id = $1",
    )
    .bind(repo)
    .bind(in_secs)
    .execute(pool)
    .await
    .unwrap();
}

const SUCCESS: Outcome = Outcome::Success { unchanged: false };
const UNCHANGED: Outcome = Outcome::Success { unchanged: true };

// opening::open

#[tokio::test]
async fn open_creates_a_waiting_pending_job_and_queues_the_mirror() {
    let fx = Fixture::new().await;
    assert_eq!(fx.status().await, SyncStatus::Idle);
    let mut tx = fx.pool().begin().await.unwrap();
    let opened = opening::open(&mut tx, fx.repo, SyncReason::Manual, 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let Some(Opened::New(id)) = opened else {
        panic!("a new job: {opened:?}")
    };
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due),
        (JobState::Pending, false, true)
    );
    assert_eq!(fx.status().await, SyncStatus::Queued);
}

#[tokio::test]
async fn open_while_a_job_is_active_returns_that_job() {
    let fx = Fixture::new().await;
    let first = fx.open(SyncReason::Manual).await;
    fx.start(first, 1).await.expect("started");
    let mut tx = fx.pool().begin().await.unwrap();
    let again = opening::open(&mut tx, fx.repo, SyncReason::Webhook, 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again, Some(Opened::Existing(first)));
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs")
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    // the running job's mirror stays syncing: no second job queued it
    assert_eq!(fx.status().await, SyncStatus::Syncing);
}

#[tokio::test]
async fn open_of_a_missing_repository_is_none() {
    let fx = Fixture::new().await;
    let mut tx = fx.pool().begin().await.unwrap();
    let opened = opening::open(&mut tx, Uuid::new_v4(), SyncReason::Manual, 3)
        .await
        .unwrap();
    assert_eq!(opened, None);
}

// opening::open_due, opening::withdraw

#[tokio::test]
async fn open_due_opens_claimed_scheduled_jobs_for_due_mirrors_only() {
    let fx = Fixture::new().await;
    let (owner, _) = fx.env.user("bob", false).await;
    let later = fx.env.mirror(&owner, "later", URL).await;
    set_next_sync(fx.pool(), fx.repo, -60.0).await;
    set_next_sync(fx.pool(), later, 3600.0).await;

    let batch = opening::open_due(fx.pool(), 10, 3, None).await.unwrap();
    assert_eq!(batch.jobs.len(), 1, "{batch:?}");
    let (id, repo) = batch.jobs[0];
    assert_eq!(repo, fx.repo);
    // claimed for the lane as it is opened: the tick pushes it itself
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.in_queue), (JobState::Pending, true));
    assert_eq!(fx.env.job(id).await.reason, SyncReason::Scheduled);
    assert_eq!(fx.status().await, SyncStatus::Queued);
    assert_eq!(fx.env.repo(later).await.sync_status, SyncStatus::Idle);
}

#[tokio::test]
async fn open_due_skips_a_due_mirror_with_an_active_job() {
    let fx = Fixture::new().await;
    let manual = fx.open(SyncReason::Manual).await;
    set_next_sync(fx.pool(), fx.repo, -60.0).await;
    let batch = opening::open_due(fx.pool(), 10, 3, None).await.unwrap();
    assert!(batch.jobs.is_empty(), "{batch:?}");
    assert_eq!(job(fx.pool(), manual).await.state, JobState::Pending);
}

#[tokio::test]
async fn withdraw_deletes_an_unstarted_job_and_settles_its_mirror() {
    let fx = Fixture::new().await;
    set_next_sync(fx.pool(), fx.repo, -60.0).await;
    let batch = opening::open_due(fx.pool(), 10, 3, None).await.unwrap();
    let (id, _) = batch.jobs[0];
    assert_eq!(fx.status().await, SyncStatus::Queued);

    opening::withdraw(fx.pool(), &[id]).await.unwrap();
    assert_eq!(job_row(fx.pool(), id).await, None);
    // never synced: back to idle, and still due for the next tick
    assert_eq!(fx.status().await, SyncStatus::Idle);
    let again = opening::open_due(fx.pool(), 10, 3, None).await.unwrap();
    assert_eq!(again.jobs.len(), 1);
}

#[tokio::test]
async fn withdraw_leaves_a_started_job_alone() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Scheduled).await;
    fx.start(id, 1).await.expect("started");
    opening::withdraw(fx.pool(), &[id]).await.unwrap();
    assert_eq!(job(fx.pool(), id).await.state, JobState::Running);
    assert_eq!(fx.status().await, SyncStatus::Syncing);
}

// attempt::start

#[tokio::test]
async fn start_runs_a_pending_job_and_opens_a_run() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let started = fx.start(id, 1).await.expect("started");
    assert_eq!(started.attempt, 1);
    assert!(!started.rescued);
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.attempts), (JobState::Running, 1));
    let repo = fx.env.repo(fx.repo).await;
    assert_eq!(
        (repo.sync_status, repo.sync_fence),
        (SyncStatus::Syncing, 1)
    );
    assert_eq!(run_outcomes(&fx.env, id).await, vec![None]);
}

#[tokio::test]
async fn start_of_a_dead_workers_running_job_abandons_its_open_run() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    let taken_over = fx.start(id, 2).await.expect("taken over");
    assert_eq!(taken_over.attempt, 2);
    assert!(taken_over.rescued);
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Abandoned), None]
    );
}

#[tokio::test]
async fn start_of_a_done_job_is_refused() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let started = fx.start(id, 1).await.expect("started");
    fx.finish(id, 1, Some(started), SUCCESS, 3).await;

    assert!(fx.start(id, 2).await.is_none());
    let repo = fx.env.repo(fx.repo).await;
    // a job no longer runnable moves no fence and no status
    assert_eq!(
        (repo.sync_status, repo.sync_fence),
        (SyncStatus::Success, 1)
    );
    assert_eq!(job(fx.pool(), id).await.state, JobState::Done);
}

#[tokio::test]
async fn start_with_a_fence_older_than_the_mirrors_is_refused() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 5).await.expect("started");
    assert!(fx.start(id, 4).await.is_none());
    let row = job(fx.pool(), id).await;
    assert_eq!(row.attempts, 1, "the stale holder started no attempt");
    assert_eq!(fx.env.repo(fx.repo).await.sync_fence, 5);
}

// attempt::finish

#[tokio::test]
async fn finish_with_success_ends_the_job_done_and_the_mirror_success() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let started = fx.start(id, 1).await.expect("started");
    let finished = fx.finish(id, 1, Some(started), SUCCESS, 3).await;
    assert!(finished.owned);
    assert_eq!(finished.end, Some(End::Success { unchanged: false }));
    assert!(finished.follow_up.is_none());
    assert_eq!(job(fx.pool(), id).await.state, JobState::Done);
    let repo = fx.env.repo(fx.repo).await;
    assert_eq!(repo.sync_status, SyncStatus::Success);
    assert!(repo.last_synced_at.is_some());
    assert!(repo.next_sync_at.is_some_and(|at| at > Utc::now()));
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Success)]
    );
}

#[tokio::test]
async fn finish_with_a_failure_and_attempts_left_retries_after_a_backoff() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let started = fx.start(id, 1).await.expect("started");
    let failure = Outcome::Failure {
        kind: ErrorKind::Network,
    };
    let finished = fx.finish(id, 1, Some(started), failure, 3).await;
    assert!(
        matches!(finished.end, Some(End::Retry { .. })),
        "{finished:?}"
    );
    let row = job(fx.pool(), id).await;
    // pending again, waiting in Postgres for its backoff and a fresh delivery
    assert_eq!(
        (row.state, row.in_queue, row.due, row.attempts),
        (JobState::Pending, false, false, 1)
    );
    assert_eq!(fx.status().await, SyncStatus::Queued);
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Retrying)]
    );
}

#[tokio::test]
async fn finish_with_a_failure_on_the_last_attempt_fails_job_and_mirror() {
    let fx = Fixture::new().await;
    let id = fx.failed_job().await;
    assert_eq!(job(fx.pool(), id).await.state, JobState::Failed);
    let repo = fx.env.repo(fx.repo).await;
    assert_eq!(repo.sync_status, SyncStatus::Failed);
    assert_eq!(repo.sync_error.as_deref(), Some("upstream failed"));
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Failed)]
    );
}

#[tokio::test]
async fn finish_with_a_permanent_failure_of_a_never_synced_mirror_hard_fails_it() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Import).await;
    let started = fx.start(id, 1).await.expect("started");
    let refused = Outcome::Failure {
        kind: ErrorKind::NotFound,
    };
    // attempts left do not matter: a permanent failure is not retried
    let finished = fx.finish(id, 1, Some(started), refused, 3).await;
    assert!(
        matches!(finished.end, Some(End::Failed { .. })),
        "{finished:?}"
    );
    assert_eq!(job(fx.pool(), id).await.state, JobState::Failed);
    let repo = fx.env.repo(fx.repo).await;
    assert_eq!(repo.sync_status, SyncStatus::HardFailed);
    assert_eq!(repo.next_sync_at, None);
}

#[tokio::test]
async fn finish_interrupted_pends_the_job_due_now_without_counting_the_attempt() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let started = fx.start(id, 1).await.expect("started");
    let finished = fx
        .finish(id, 1, Some(started), Outcome::Interrupted, 3)
        .await;
    assert_eq!(finished.end, Some(End::Interrupted));
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due, row.attempts),
        (JobState::Pending, false, true, 0)
    );
    assert_eq!(fx.status().await, SyncStatus::Queued);
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Interrupted)]
    );
}

#[tokio::test]
async fn finish_with_a_stale_fence_writes_only_a_lost_lock_run() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let first = fx.start(id, 1).await.expect("started");
    // another worker took the sync over with a newer fence
    fx.start(id, 2).await.expect("taken over");

    let finished = fx.finish(id, 1, Some(first), SUCCESS, 3).await;
    assert!(!finished.owned);
    assert_eq!(finished.end, None);
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.attempts), (JobState::Running, 2));
    let repo = fx.env.repo(fx.repo).await;
    assert_eq!(
        (repo.sync_status, repo.sync_fence),
        (SyncStatus::Syncing, 2)
    );
    assert!(repo.last_synced_at.is_none());
    let runs = fx.env.runs(id).await;
    assert_eq!(runs[0].id, first.run_id);
    assert_eq!(
        runs.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        vec![Some(RunOutcome::LostLock), None]
    );
}

#[tokio::test]
async fn finish_without_a_recorded_start_records_start_and_end_together() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let finished = fx.finish(id, 1, None, SUCCESS, 3).await;
    assert!(finished.owned);
    assert_eq!(finished.started.map(|s| s.attempt), Some(1));
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.attempts), (JobState::Done, 1));
    assert_eq!(fx.status().await, SyncStatus::Success);
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Success)]
    );
}

#[tokio::test]
async fn finish_without_a_recorded_start_of_a_finished_job_writes_nothing() {
    let fx = Fixture::new().await;
    let id = fx.failed_job().await;
    let finished = fx.finish(id, 2, None, SUCCESS, 3).await;
    assert!(!finished.owned);
    assert!(finished.started.is_none());
    assert_eq!(job(fx.pool(), id).await.state, JobState::Failed);
    assert_eq!(fx.status().await, SyncStatus::Failed);
    assert_eq!(
        run_outcomes(&fx.env, id).await,
        vec![Some(RunOutcome::Failed)]
    );
}

#[tokio::test]
async fn finish_opens_the_follow_up_requested_while_the_attempt_ran() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Scheduled).await;
    let started = fx.start(id, 1).await.expect("started");
    let requested = coalesce::follow_up(fx.pool(), id, SyncReason::Webhook, Window::None)
        .await
        .unwrap();
    assert!(requested);

    let finished = fx.finish(id, 1, Some(started), SUCCESS, 3).await;
    let follow_up = finished.follow_up.expect("a follow-up job");
    assert_eq!(follow_up.reason, SyncReason::Webhook);
    assert_ne!(follow_up.job_id, id);
    assert_eq!(job(fx.pool(), id).await.state, JobState::Done);
    let next = job(fx.pool(), follow_up.job_id).await;
    assert_eq!((next.state, next.in_queue), (JobState::Pending, false));
    // the mirror's sync succeeded, and another is queued behind it
    assert_eq!(fx.status().await, SyncStatus::Queued);
}

#[tokio::test]
async fn a_retry_carries_no_follow_up_the_next_attempt_settles_it() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Scheduled).await;
    let started = fx.start(id, 1).await.expect("started");
    coalesce::follow_up(fx.pool(), id, SyncReason::Webhook, Window::None)
        .await
        .unwrap();
    let failure = Outcome::Failure {
        kind: ErrorKind::Timeout,
    };
    let finished = fx.finish(id, 1, Some(started), failure, 3).await;
    assert!(
        matches!(finished.end, Some(End::Retry { .. })),
        "{finished:?}"
    );
    assert!(finished.follow_up.is_none());
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs")
        .fetch_one(fx.pool())
        .await
        .unwrap();
    assert_eq!(jobs, 1);
}

// attempt::finish: unchanged checks folded (lifecycle::fold)

impl Fixture {
    /// A job opened and finished at once (no recorded start) with `outcome`, under
    /// `fence`; returns the job.
    async fn check(&self, fence: i64, outcome: Outcome) -> Uuid {
        let job = self.open(SyncReason::Scheduled).await;
        let finished = self.finish(job, fence, None, outcome, 1).await;
        assert!(finished.owned, "{finished:?}");
        job
    }

    /// The mirror's history, newest first: (outcome, unchanged, checks) of each run.
    async fn history(&self) -> Vec<(Option<RunOutcome>, bool, i32)> {
        runs::for_repo(self.pool(), self.repo, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.outcome, r.unchanged, r.checks))
            .collect()
    }

    async fn counted_checks(&self) -> i64 {
        sqlx::query_scalar("SELECT coalesce(sum(checks), 0)::bigint FROM unchanged_checks")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

const OK: Option<RunOutcome> = Some(RunOutcome::Success);

#[tokio::test]
async fn unchanged_checks_in_a_row_fold_into_the_run_of_the_first() {
    let fx = Fixture::new().await;
    let first = fx.check(1, UNCHANGED).await;
    assert_eq!(fx.history().await, vec![(OK, true, 1)]);
    let second = fx.check(2, UNCHANGED).await;
    assert_eq!(fx.history().await, vec![(OK, true, 2)]);

    // the third lists for long: recorded as started, its own run shows while it runs
    let third = fx.open(SyncReason::Scheduled).await;
    let started = fx.start(third, 3).await.expect("started");
    assert_eq!(fx.history().await, vec![(None, false, 1), (OK, true, 2)]);
    let finished = fx.finish(third, 3, Some(started), UNCHANGED, 1).await;
    assert_eq!(finished.end, Some(End::Success { unchanged: true }));
    assert_eq!(fx.history().await, vec![(OK, true, 3)], "its run folded in");

    let run = &runs::for_repo(fx.pool(), fx.repo, 1).await.unwrap()[0];
    let third_job = fx.env.job(third).await;
    assert_eq!(run.job_id, first, "the run is the first check's");
    assert_eq!(Some(run.last_checked_at), third_job.started_at);
    assert!(run.last_checked_at > run.started_at, "{run:?}");
    assert_eq!((run.duration_ms, run.list_ms), (Some(10), Some(7)));
    // the first and the latest check's jobs stay, the one in between is gone, and each
    // job left shows the run
    assert_eq!(third_job.state, JobState::Done);
    assert!(job_row(fx.pool(), second).await.is_none());
    for job in [first, third] {
        let shown: Vec<i64> = fx.env.runs(job).await.iter().map(|r| r.id).collect();
        assert_eq!(shown, vec![run.id], "job {job}");
    }
    assert_eq!(fx.counted_checks().await, 3, "every check counted");
    assert_eq!(fx.status().await, SyncStatus::Success);
}

#[tokio::test]
async fn a_change_a_failure_or_an_interruption_ends_a_fold_and_only_a_change_takes_in_the_next() {
    let fx = Fixture::new().await;
    fx.check(1, UNCHANGED).await;
    fx.check(2, SUCCESS).await;
    fx.check(3, UNCHANGED).await;
    fx.check(4, UNCHANGED).await;
    let failure = Outcome::Failure {
        kind: ErrorKind::Network,
    };
    fx.check(5, failure).await;
    fx.check(6, UNCHANGED).await;
    // a shutdown interrupts a sync; its job runs again, unchanged
    let job = fx.open(SyncReason::Scheduled).await;
    let started = fx.start(job, 7).await.expect("started");
    let interrupted = fx
        .finish(job, 7, Some(started), Outcome::Interrupted, 3)
        .await;
    assert_eq!(interrupted.end, Some(End::Interrupted));
    fx.finish(job, 8, None, UNCHANGED, 3).await;
    fx.check(9, UNCHANGED).await;

    let interrupted = Some(RunOutcome::Interrupted);
    // the change's run takes in the unchanged checks after it; a failure and an
    // interruption take in none
    assert_eq!(
        fx.history().await,
        vec![
            (OK, true, 2),
            (interrupted, false, 1),
            (OK, true, 1),
            (Some(RunOutcome::Failed), false, 1),
            (OK, false, 3),
            (OK, true, 1),
        ]
    );
    assert_eq!(fx.counted_checks().await, 6);
}

#[tokio::test]
async fn an_unchanged_check_that_did_more_than_list_keeps_its_figures_in_a_run_of_its_own_then_takes_in_the_next(
) {
    let fx = Fixture::new().await;
    fx.check(1, UNCHANGED).await;
    fx.check(2, UNCHANGED).await;
    // missing LFS objects tried again, and one arrived
    let job = fx.open(SyncReason::Scheduled).await;
    let stats = RunStats {
        unchanged: true,
        lfs_objects: Some(1),
        lfs_bytes: Some(2048),
        ..RunStats::default()
    };
    fx.finish_with(job, 3, None, UNCHANGED, 1, stats).await;
    let own = runs::for_repo(fx.pool(), fx.repo, 1)
        .await
        .unwrap()
        .remove(0);
    // the checks after it that only listed are counted in it, its figures unchanged
    fx.check(4, UNCHANGED).await;
    fx.check(5, UNCHANGED).await;
    assert_eq!(fx.history().await, vec![(OK, true, 3), (OK, true, 2)]);
    let run = runs::for_repo(fx.pool(), fx.repo, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(run.id, own.id);
    assert_eq!(
        (
            run.lfs_objects,
            run.lfs_bytes,
            run.list_ms,
            run.duration_ms,
            &run.worker
        ),
        (
            Some(1),
            Some(2048),
            own.list_ms,
            own.duration_ms,
            &own.worker
        )
    );
    assert!(run.last_checked_at > own.last_checked_at, "{run:?}");
    assert_eq!(fx.counted_checks().await, 5);
}

#[tokio::test]
async fn an_attempt_that_lost_its_lease_folds_nothing_and_its_successor_starts_a_run() {
    let fx = Fixture::new().await;
    fx.check(1, UNCHANGED).await;
    let job = fx.open(SyncReason::Scheduled).await;
    let stale = fx.start(job, 2).await.expect("started");
    // another worker took the sync over with a newer fence
    let current = fx.start(job, 3).await.expect("taken over");
    let lost = fx.finish(job, 2, Some(stale), UNCHANGED, 3).await;
    assert!(!lost.owned);
    fx.finish(job, 3, Some(current), UNCHANGED, 3).await;
    assert_eq!(
        fx.history().await,
        vec![
            (OK, true, 1),
            (Some(RunOutcome::LostLock), true, 1),
            (OK, true, 1)
        ]
    );
    assert_eq!(fx.counted_checks().await, 2, "the lost attempt is no check");
}

#[tokio::test]
async fn a_fold_rewrites_its_run_in_place_without_touching_an_index() {
    let fx = Fixture::new().await;
    const FOLDS: i64 = 20;
    for fence in 1..=FOLDS + 1 {
        fx.check(fence, UNCHANGED).await;
    }
    assert_eq!(fx.history().await, vec![(OK, true, FOLDS as i32 + 1)]);
    // every update of sync_runs was a fold, and every fold a HOT update (the statistics
    // arrive once the writing connections have been idle a moment)
    let (updates, hot) = eventually(
        "the table's statistics",
        Duration::from_secs(30),
        || async {
            let (updates, hot): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'sync_runs'",
        )
        .fetch_one(fx.pool())
        .await
        .unwrap();
            (updates >= FOLDS).then_some((updates, hot))
        },
    )
    .await;
    assert_eq!((updates, hot), (FOLDS, FOLDS));
}

// rescue::requeue_running

#[tokio::test]
async fn requeue_running_sends_a_running_job_back_to_waiting() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    assert!(rescue::requeue_running(fx.pool(), id).await.unwrap());
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due),
        (JobState::Pending, false, true)
    );
    // unchanged: the attempt to come sets it
    assert_eq!(fx.status().await, SyncStatus::Syncing);
}

#[tokio::test]
async fn requeue_running_of_a_job_not_running_is_refused() {
    let fx = Fixture::new().await;
    let failed = fx.failed_job().await;
    assert!(!rescue::requeue_running(fx.pool(), failed).await.unwrap());
    assert_eq!(job(fx.pool(), failed).await.state, JobState::Failed);
    let pending = fx.open(SyncReason::Manual).await;
    waiting::claim(fx.pool(), &[pending]).await.unwrap();
    assert!(!rescue::requeue_running(fx.pool(), pending).await.unwrap());
    // still in its lane: a pending job is not given a second delivery
    assert!(job(fx.pool(), pending).await.in_queue);
}

// rescue::postpone_held

#[tokio::test]
async fn postpone_held_sends_a_dead_workers_running_job_back_to_waiting_later() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    // the delivery that took the lease over holds fence 2
    let delay = std::time::Duration::from_secs(60);
    assert!(rescue::postpone_held(fx.pool(), id, 2, delay)
        .await
        .unwrap());
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due),
        (JobState::Pending, false, false)
    );
    // a pending job is postponed the same way
    assert!(rescue::postpone_held(fx.pool(), id, 2, delay)
        .await
        .unwrap());
    assert_eq!(job(fx.pool(), id).await.state, JobState::Pending);
}

#[tokio::test]
async fn postpone_held_by_a_stale_fence_or_of_a_finished_job_is_refused() {
    let fx = Fixture::new().await;
    let failed = fx.failed_job().await;
    let now = std::time::Duration::ZERO;
    assert!(!rescue::postpone_held(fx.pool(), failed, 99, now)
        .await
        .unwrap());
    assert_eq!(job(fx.pool(), failed).await.state, JobState::Failed);
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 3).await.expect("started");
    // a newer holder (fence 3) started it: the older lease's delivery changes nothing
    assert!(!rescue::postpone_held(fx.pool(), id, 2, now).await.unwrap());
    assert_eq!(job(fx.pool(), id).await.state, JobState::Running);
}

// operator::retry

#[tokio::test]
async fn retry_of_a_failed_job_pends_it_with_more_attempts() {
    let fx = Fixture::new().await;
    let id = fx.failed_job().await;
    let was = operator::retry(fx.pool(), id, 2).await.unwrap();
    assert_eq!(was, Ok(JobState::Failed));
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due),
        (JobState::Pending, false, true)
    );
    let j = fx.env.job(id).await;
    assert_eq!((j.attempts, j.max_attempts), (1, 3));
    assert!(j.finished_at.is_none());
    assert_eq!(fx.status().await, SyncStatus::Queued);
}

#[tokio::test]
async fn retry_of_a_pending_job_is_refused() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let refused = operator::retry(fx.pool(), id, 2).await.unwrap();
    assert_eq!(refused, Err(Refused::State(JobState::Pending)));
    assert_eq!(fx.env.job(id).await.max_attempts, 3);
}

#[tokio::test]
async fn retry_while_the_mirror_has_another_active_job_is_refused_as_busy() {
    let fx = Fixture::new().await;
    let failed = fx.failed_job().await;
    let other = fx.open(SyncReason::Manual).await;
    let refused = operator::retry(fx.pool(), failed, 2).await.unwrap();
    assert_eq!(refused, Err(Refused::Busy(other)));
    assert_eq!(job(fx.pool(), failed).await.state, JobState::Failed);
}

#[tokio::test]
async fn retry_of_an_unknown_job_is_not_found() {
    let fx = Fixture::new().await;
    let refused = operator::retry(fx.pool(), Uuid::new_v4(), 2).await.unwrap();
    assert_eq!(refused, Err(Refused::NotFound));
}

// operator::discard

#[tokio::test]
async fn discard_of_a_pending_job_kills_it_and_settles_the_mirror() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    assert_eq!(fx.status().await, SyncStatus::Queued);
    let was = operator::discard(fx.pool(), id).await.unwrap();
    assert_eq!(was, Ok(JobState::Pending));
    assert_eq!(job(fx.pool(), id).await.state, JobState::Dead);
    assert!(fx.env.job(id).await.finished_at.is_some());
    assert_eq!(fx.status().await, SyncStatus::Idle);
}

#[tokio::test]
async fn discard_of_a_failed_job_leaves_the_mirror_failed() {
    let fx = Fixture::new().await;
    let id = fx.failed_job().await;
    assert_eq!(
        operator::discard(fx.pool(), id).await.unwrap(),
        Ok(JobState::Failed)
    );
    assert_eq!(job(fx.pool(), id).await.state, JobState::Dead);
    assert_eq!(fx.status().await, SyncStatus::Failed);
}

#[tokio::test]
async fn discard_of_a_running_job_is_refused() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    let refused = operator::discard(fx.pool(), id).await.unwrap();
    assert_eq!(refused, Err(Refused::State(JobState::Running)));
    assert_eq!(job(fx.pool(), id).await.state, JobState::Running);
    assert_eq!(fx.status().await, SyncStatus::Syncing);
}

// operator::new_upstream

async fn new_upstream(pool: &PgPool, repo: Uuid) {
    let mut tx = pool.begin().await.unwrap();
    operator::new_upstream(&mut tx, repo).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn new_upstream_turns_a_hard_failed_mirror_into_failed() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Import).await;
    let started = fx.start(id, 1).await.expect("started");
    let auth = Outcome::Failure {
        kind: ErrorKind::Auth,
    };
    fx.finish(id, 1, Some(started), auth, 3).await;
    assert_eq!(fx.status().await, SyncStatus::HardFailed);
    new_upstream(fx.pool(), fx.repo).await;
    assert_eq!(fx.status().await, SyncStatus::Failed);
}

#[tokio::test]
async fn new_upstream_leaves_any_other_status_alone() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    new_upstream(fx.pool(), fx.repo).await;
    assert_eq!(fx.status().await, SyncStatus::Queued);
    let started = fx.start(id, 1).await.expect("started");
    fx.finish(id, 1, Some(started), SUCCESS, 3).await;
    new_upstream(fx.pool(), fx.repo).await;
    assert_eq!(fx.status().await, SyncStatus::Success);
}

// db::waiting::claim, unclaim, postpone

#[tokio::test]
async fn claim_takes_a_due_waiting_job_once() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    let claimed = waiting::claim(fx.pool(), &[id]).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.job_id).collect::<Vec<_>>(),
        vec![id]
    );
    assert_eq!(claimed[0].repo_id, fx.repo);
    assert!(job(fx.pool(), id).await.in_queue);
    // a lane holds it: a second claimant pushes nothing
    assert!(waiting::claim(fx.pool(), &[id]).await.unwrap().is_empty());
}

#[tokio::test]
async fn claim_of_a_job_not_due_returns_nothing() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    assert!(waiting::postpone(fx.pool(), id, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(waiting::claim(fx.pool(), &[id]).await.unwrap().is_empty());
    assert!(!job(fx.pool(), id).await.in_queue);
}

#[tokio::test]
async fn claim_of_a_running_job_returns_nothing() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    assert!(waiting::claim(fx.pool(), &[id]).await.unwrap().is_empty());
    assert!(!job(fx.pool(), id).await.in_queue);
}

#[tokio::test]
async fn unclaim_gives_a_job_back_to_wait_for_the_next_claim() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    waiting::claim(fx.pool(), &[id]).await.unwrap();
    waiting::unclaim(fx.pool(), &[id]).await.unwrap();
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.in_queue), (JobState::Pending, false));
    assert_eq!(waiting::claim(fx.pool(), &[id]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn unclaim_leaves_a_job_that_started_alone() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    waiting::claim(fx.pool(), &[id]).await.unwrap();
    fx.start(id, 1).await.expect("started");
    waiting::unclaim(fx.pool(), &[id]).await.unwrap();
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.in_queue), (JobState::Running, true));
}

#[tokio::test]
async fn postpone_ends_a_delivery_and_makes_the_job_wait() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    waiting::claim(fx.pool(), &[id]).await.unwrap();
    assert!(waiting::postpone(fx.pool(), id, Duration::from_secs(60))
        .await
        .unwrap());
    let row = job(fx.pool(), id).await;
    assert_eq!(
        (row.state, row.in_queue, row.due),
        (JobState::Pending, false, false)
    );
    let wait = waiting::count(fx.pool()).await.unwrap();
    assert_eq!((wait.due, wait.later), (0, 1));
}

#[tokio::test]
async fn postpone_of_a_running_job_is_refused() {
    let fx = Fixture::new().await;
    let id = fx.open(SyncReason::Manual).await;
    fx.start(id, 1).await.expect("started");
    assert!(!waiting::postpone(fx.pool(), id, Duration::from_secs(60))
        .await
        .unwrap());
    let row = job(fx.pool(), id).await;
    assert_eq!((row.state, row.due), (JobState::Running, true));
}

// db::waiting::claim_due

/// Owners' waiting jobs, oldest first across owners in the order given (the first
/// owner's are the oldest of all); returns each owner's job ids, oldest first.
async fn waiting_jobs(env: &TestEnv, per_owner: &[usize], reason: SyncReason) -> Vec<Vec<Uuid>> {
    let mut ids = Vec::new();
    let mut age = 1000;
    for (o, &count) in per_owner.iter().enumerate() {
        let (owner, _) = env.user(&format!("owner{o}"), false).await;
        let mut own = Vec::new();
        for i in 0..count {
            let repo = env.mirror(&owner, &format!("m{i}"), URL).await;
            let id = open(&env.pool, repo, reason).await;
            sqlx::query(
                "UPDATE sync_jobs SET run_at = now() - make_interval(secs => $2) WHERE id = $1",
            )
            .bind(id)
            .bind(age as f64)
            .execute(&env.pool)
            .await
            .unwrap();
            age -= 1;
            own.push(id);
        }
        ids.push(own);
    }
    ids
}

#[tokio::test]
async fn claim_due_takes_turns_across_owners_each_owners_oldest_first() {
    // (waiting per owner, claim size, taken per owner)
    let table: &[(&[usize], i64, &[usize])] = &[
        (&[5, 5, 1], 3, &[1, 1, 1]),
        (&[5, 5, 1], 5, &[2, 2, 1]),
        (&[5, 5, 1], 7, &[3, 3, 1]),
        (&[5, 5, 1], 20, &[5, 5, 1]),
        (&[1, 0, 4], 3, &[1, 0, 2]),
    ];
    for &(per_owner, limit, expected) in table {
        let env = TestEnv::new().await;
        let jobs = waiting_jobs(&env, per_owner, SyncReason::Manual).await;
        let claimed = waiting::claim_due(&env.pool, None, Lane::Priority, limit)
            .await
            .unwrap();
        let claimed: Vec<Uuid> = claimed.into_iter().map(|m| m.job_id).collect();
        for (o, own) in jobs.iter().enumerate() {
            let taken: Vec<Uuid> = own
                .iter()
                .copied()
                .filter(|id| claimed.contains(id))
                .collect();
            assert_eq!(
                taken,
                own[..expected[o]].to_vec(),
                "{per_owner:?} claiming {limit}: owner {o} gets its {} oldest",
                expected[o]
            );
        }
        let in_queue: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE in_queue")
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(in_queue, claimed.len() as i64);
    }
}

#[tokio::test]
async fn claim_due_of_the_scheduled_lane_takes_the_oldest_scheduled_jobs() {
    let env = TestEnv::new().await;
    let scheduled = waiting_jobs(&env, &[3], SyncReason::Scheduled).await;
    let (owner, _) = env.user("manual", false).await;
    let repo = env.mirror(&owner, "m", URL).await;
    let manual = open(&env.pool, repo, SyncReason::Manual).await;

    let claimed = waiting::claim_due(&env.pool, None, Lane::Scheduled, 2)
        .await
        .unwrap();
    let claimed: Vec<Uuid> = claimed.into_iter().map(|m| m.job_id).collect();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.contains(&scheduled[0][0]) && claimed.contains(&scheduled[0][1]));
    assert!(!job(&env.pool, manual).await.in_queue);
    // and the priority lane takes the manual one, not the scheduled one left
    let priority = waiting::claim_due(&env.pool, None, Lane::Priority, 10)
        .await
        .unwrap();
    assert_eq!(
        priority.into_iter().map(|m| m.job_id).collect::<Vec<_>>(),
        vec![manual]
    );
}

#[tokio::test]
async fn claim_due_passes_over_jobs_not_due() {
    let env = TestEnv::new().await;
    let jobs = waiting_jobs(&env, &[2], SyncReason::Manual).await;
    let later = jobs[0][0];
    waiting::postpone(&env.pool, later, Duration::from_secs(60))
        .await
        .unwrap();
    let claimed = waiting::claim_due(&env.pool, None, Lane::Priority, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.into_iter().map(|m| m.job_id).collect::<Vec<_>>(),
        vec![jobs[0][1]]
    );
}

/// A pass still running at the end: the check gets a run of its own (it did more than
/// list), and the pass's figures land on that run afterwards, under the fence only; a
/// later unchanged check is counted in it, its figures kept.
#[tokio::test]
async fn housekeeping_figures_land_on_the_ended_run_under_its_fence() {
    use stasis_shared::domain::lifecycle::housekept::{self, Figures};

    let fixture = Fixture::new().await;
    let fx = &fixture;
    fx.check(1, UNCHANGED).await;
    let job = fx.open(SyncReason::Scheduled).await;
    let stats = RunStats {
        unchanged: true,
        housekeeping_after: true,
        ..RunStats::default()
    };
    let ended = fx.finish_with(job, 2, None, UNCHANGED, 1, stats).await;
    let run_id = ended.run_id.expect("owned");
    assert_eq!(fx.status().await, SyncStatus::Success);
    assert_eq!(fx.history().await, vec![(OK, true, 1), (OK, true, 1)]);

    let figures = Figures {
        housekeeping: Some(("full", 42)),
        size_bytes: Some(4096),
    };
    let pass = |fence| async move {
        housekept::record(fx.pool(), &attempt_of(job, fx.repo, fence), run_id, figures)
            .await
            .expect("record")
    };
    let landed = || async {
        sqlx::query_as::<_, (Option<String>, Option<i32>)>(
            "SELECT housekeeping, housekeeping_ms FROM sync_runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_one(fx.pool())
        .await
        .unwrap()
    };
    // a holder whose fence moved on writes nothing
    assert!(!pass(1).await);
    assert_eq!(landed().await, (None, None));
    assert_eq!(fx.env.repo(fx.repo).await.size_bytes, None);
    assert!(pass(2).await);
    assert_eq!(landed().await, (Some("full".into()), Some(42)));
    assert_eq!(fx.env.repo(fx.repo).await.size_bytes, Some(4096));
    assert_eq!(fx.status().await, SyncStatus::Success);

    fx.check(3, UNCHANGED).await;
    assert_eq!(fx.history().await, vec![(OK, true, 2), (OK, true, 1)]);
    assert_eq!(landed().await, (Some("full".into()), Some(42)));
}
