//! What the worker writes to Postgres: one statement (atomic on its own) when an attempt
//! starts, one when it ends; a sync that ends at its ref listing, quickly and with
//! nothing written, is recorded by the end statement alone. Every write of results is
//! fenced by the lease's fencing token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use stasis_shared::db::settings;
use stasis_shared::domain::{ErrorKind, RunOutcome};
use stasis_shared::git::fetch::{FetchError, FetchReport};
use uuid::Uuid;

use crate::housekeeping::Housekept;

#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub attempt: i32,
    pub run_id: i64,
    /// Seconds from when the attempt was due (enqueue or end of its backoff) to now.
    pub waited_secs: f64,
    /// An earlier attempt of this job was left open by a worker that died.
    pub rescued: bool,
}

/// Which attempt a statement records, and who makes it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub job_id: Uuid,
    pub repo_id: Uuid,
    pub worker: &'a str,
    /// The lease's fencing token.
    pub fence: i64,
    /// When the sync's own work began, by the worker's clock: a run row spans that work
    /// (taken and ended under one of the worker's permits), not the bookkeeping after it.
    pub started_at: DateTime<Utc>,
}

/// Marks the job running and the repository syncing, and opens a run row. `None` when
/// the job is no longer runnable or a holder with a newer fence has already started.
/// One statement, atomic on its own: a no-op sync is mostly round trips to Postgres.
pub async fn start(pool: &PgPool, a: &Attempt<'_>) -> sqlx::Result<Option<Started>> {
    // Each step reads the one before it, so none runs unless all can: a job no longer
    // runnable moves no fence, a stale fence starts no attempt. A run still open belonged
    // to a worker that died mid-attempt; the new run is not visible to that UPDATE.
    let started: Option<(i32, f64, i64, i64)> = sqlx::query_as(
        "WITH job AS (
             SELECT id FROM sync_jobs WHERE id = $1 AND state IN ('pending', 'running')
             FOR UPDATE
         ), fenced AS (
             UPDATE repositories SET sync_fence = $3, sync_status = 'syncing', updated_at = now()
             WHERE id = $2 AND sync_fence < $3 AND EXISTS (SELECT 1 FROM job)
             RETURNING id
         ), attempt AS (
             UPDATE sync_jobs j SET state = 'running', attempts = attempts + 1, worker = $4,
                 started_at = $5
             FROM fenced WHERE j.id = $1
             RETURNING j.attempts, GREATEST(EXTRACT(EPOCH FROM now() - j.run_at), 0)::float8 AS waited
         ), abandoned AS (
             UPDATE sync_runs SET finished_at = now(), outcome = 'abandoned',
                 error = 'worker stopped before finishing this attempt'
             WHERE job_id = $1 AND finished_at IS NULL AND EXISTS (SELECT 1 FROM attempt)
             RETURNING id
         ), run AS (
             INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at)
             SELECT $2, $1, attempts, $4, $5 FROM attempt
             RETURNING id
         )
         SELECT attempt.attempts, attempt.waited, run.id, (SELECT count(*) FROM abandoned)
         FROM attempt, run",
    )
    .bind(a.job_id)
    .bind(a.repo_id)
    .bind(a.fence)
    .bind(a.worker)
    .bind(a.started_at)
    .fetch_optional(pool)
    .await?;
    Ok(
        started.map(|(attempt, waited_secs, run_id, abandoned)| Started {
            attempt,
            run_id,
            waited_secs,
            rescued: abandoned > 0,
        }),
    )
}

/// How an attempt ended, as the worker decided.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    Success(&'a FetchReport),
    Retry {
        error: &'a FetchError,
        delay: Duration,
    },
    Failed(&'a FetchError),
    /// Stopped by the worker's shutdown: the job is pending again at once, and the
    /// attempt does not count against `sync.max_attempts`.
    Interrupted(&'a FetchError),
}

impl Ending<'_> {
    pub fn outcome(&self) -> RunOutcome {
        match self {
            Ending::Success(_) => RunOutcome::Success,
            Ending::Retry { .. } => RunOutcome::Retrying,
            Ending::Failed(_) => RunOutcome::Failed,
            Ending::Interrupted(_) => RunOutcome::Interrupted,
        }
    }
}

const INTERRUPTED: &str = "sync interrupted: the worker shut down; the job was requeued";

pub struct Finish<'a> {
    pub attempt: Attempt<'a>,
    /// The run `start` opened; `None` when the attempt was not recorded as started, so
    /// this statement records its start too.
    pub run_id: Option<i64>,
    /// The sync's own work, from `attempt.started_at`: the run ends when it ends.
    pub duration: Duration,
    pub default_interval: Duration,
    /// `mirror.max_sync_interval` and `mirror.hard_fail_after`.
    pub max_interval: Duration,
    pub hard_fail_after: u32,
    /// `owner/name`, for notifications.
    pub repo_name: &'a str,
    /// `notify.urls`: receivers of every mirror's events.
    pub notify_urls: &'a [String],
    /// The repack after the fetch, recorded with the run, and the mirror's new size.
    pub housekept: Housekept,
    pub ending: Ending<'a>,
}

#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The results were written: the fence held (and, without a recorded start, the job
    /// was still runnable).
    pub owned: bool,
    /// The attempt this statement started, when `start` had not.
    pub started: Option<Started>,
}

/// Records the attempt's end. Not owned, writing only the run row, when the
/// repository's fence moved on: another worker owns the sync now and its results win.
/// Without a run from `start`, it records the start as `start` would have, and writes
/// nothing when `start` would have refused.
///
/// One statement, atomic on its own, with these steps:
/// * The next sync: the mirror's base interval (its own, the run-time override or the
///   default) times a factor that unchanged syncs grow by half up to
///   `mirror.max_sync_interval` and changed ones halve back to 1. Failures back off
///   doubling up to the same cap. Past `mirror.hard_fail_after` (or at once for auth and
///   not-found) the mirror is `hard_failed` and unscheduled. ±10% jitter keeps mirrors
///   imported together from firing in the same second forever.
/// * The event this end announces, if any, for every receiver (`notify.urls` and the
///   owner's URL) in the notifications outbox: the first failure after a success, every
///   sync that leaves the mirror `hard_failed` (a threshold crossed, or a manual retry
///   that failed again), a success after failures. It exists exactly when the status
///   change does.
/// * The run row, then the job: done, failed, or pending again until its backoff ends.
pub async fn finish(pool: &PgPool, f: &Finish<'_>) -> sqlx::Result<Finished> {
    let (status, error, kind): (&str, Option<&str>, Option<ErrorKind>) = match &f.ending {
        Ending::Success(_) => ("success", None, None),
        Ending::Retry { error, .. } => ("queued", Some(&error.message), Some(error.kind)),
        Ending::Failed(error) => ("failed", Some(&error.message), Some(error.kind)),
        // neither a success nor a failure of the mirror: its status and schedule stand
        Ending::Interrupted(_) => ("queued", Some(INTERRUPTED), None),
    };
    let success = matches!(f.ending, Ending::Success(_));
    let unchanged = matches!(f.ending, Ending::Success(r) if r.unchanged);
    let stops_schedule = kind.is_some_and(ErrorKind::stops_schedule);
    let report = match &f.ending {
        Ending::Success(report) => (*report).clone(),
        _ => FetchReport::default(),
    };
    let (job_state, retry_delay) = match &f.ending {
        Ending::Success(_) => ("done", Duration::ZERO),
        Ending::Retry { delay, .. } => ("pending", *delay),
        Ending::Failed(_) => ("failed", Duration::ZERO),
        Ending::Interrupted(_) => ("pending", Duration::ZERO),
    };
    let row: (bool, Option<i32>, Option<f64>, i64, Option<i64>) = sqlx::query_as(
        "WITH job_ok AS (
             SELECT id, run_at FROM sync_jobs
             WHERE id = $15 AND $26::bigint IS NULL AND state IN ('pending', 'running')
             FOR UPDATE
         ), b AS (
             SELECT r.id, r.interval_factor AS f, r.consecutive_failures AS n,
                    COALESCE(r.sync_interval_secs::double precision,
                             (SELECT value::double precision FROM settings WHERE key = $8),
                             $7) AS base
             FROM repositories r WHERE r.id = $1
         ), c AS (
             SELECT id, base, n,
                    CASE WHEN $9 THEN LEAST(f * 1.5, GREATEST($10 / base, 1))
                         ELSE GREATEST(f / 2, 1) END AS f_ok,
                    ($11 OR n + 1 >= $12) AS hard
             FROM b
         ), repo AS (
             UPDATE repositories r SET
                 sync_fence = $2,
                 sync_status = CASE WHEN $3 = 'failed' AND c.hard THEN 'hard_failed' ELSE $3 END,
                 sync_error = $4,
                 last_synced_at = CASE WHEN $5 THEN now() ELSE r.last_synced_at END,
                 last_duration_ms = $6,
                 consecutive_failures = CASE $3 WHEN 'success' THEN 0
                                                WHEN 'failed' THEN c.n + 1 ELSE c.n END,
                 interval_factor = CASE WHEN $3 = 'success' THEN c.f_ok ELSE r.interval_factor END,
                 size_bytes = COALESCE($34, r.size_bytes),
                 next_sync_at = CASE
                     WHEN $3 = 'queued' THEN r.next_sync_at
                     WHEN $3 = 'failed' AND c.hard THEN NULL
                     WHEN $3 = 'failed' THEN now() + make_interval(secs =>
                         GREATEST(c.base, LEAST(c.base * power(2, c.n), $10)) * (0.9 + random() * 0.2))
                     ELSE now() + make_interval(secs =>
                         GREATEST(c.base, LEAST(c.base * c.f_ok, $10)) * (0.9 + random() * 0.2))
                     END,
                 updated_at = now()
             FROM c WHERE r.id = c.id AND CASE WHEN $26::bigint IS NULL
                 THEN r.sync_fence < $2 AND EXISTS (SELECT 1 FROM job_ok)
                 ELSE r.sync_fence = $2 END
             RETURNING r.sync_status, c.n
         ), event AS (
             SELECT CASE WHEN sync_status = 'failed' AND n = 0 THEN 'failed'
                         WHEN sync_status = 'hard_failed' THEN 'hard_failed'
                         WHEN sync_status = 'success' AND n > 0 THEN 'recovered' END AS name,
                    sync_status, n
             FROM repo
         ), notified AS (
             INSERT INTO notifications (repo_id, event, url, payload)
             SELECT $1, e.name, receivers.url, jsonb_build_object(
                 'event', e.name, 'repository', $13::text, 'sync_status', e.sync_status,
                 'error', $4, 'error_kind', $14::text,
                 'consecutive_failures', CASE WHEN e.sync_status = 'success' THEN 0 ELSE e.n + 1 END,
                 'job_id', $15::uuid, 'at', now())
             FROM event e, (
                 SELECT unnest($16::text[]) AS url
                 UNION
                 SELECT u.notify_url FROM repositories r JOIN users u ON u.id = r.owner_id
                 WHERE r.id = $1 AND u.notify_url IS NOT NULL
             ) receivers
             WHERE e.name IS NOT NULL
         ), abandoned AS (
             UPDATE sync_runs SET finished_at = now(), outcome = 'abandoned',
                 error = 'worker stopped before finishing this attempt'
             WHERE job_id = $15 AND finished_at IS NULL AND $26::bigint IS NULL
                 AND EXISTS (SELECT 1 FROM repo)
             RETURNING id
         ), run AS (
             UPDATE sync_runs SET finished_at = $31::timestamptz + make_interval(secs => $30),
                 outcome = CASE WHEN EXISTS (SELECT 1 FROM repo) THEN $17 ELSE 'lost_lock' END,
                 error = $4, error_kind = $14, refs_updated = $18, refs_pruned = $19,
                 bytes_received = $20, unchanged = $21, objects_received = $22,
                 refs_created = $23, list_ms = $24, fetch_ms = $25,
                 housekeeping = $32, housekeeping_ms = $33
             WHERE id = $26
         ), job AS (
             UPDATE sync_jobs SET state = $27, last_error = $4,
                 run_at = now() + make_interval(secs => $28),
                 finished_at = CASE WHEN $27 = 'pending' THEN NULL ELSE now() END,
                 attempts = attempts + CASE WHEN $26::bigint IS NULL THEN 1 ELSE 0 END
                     - CASE WHEN $17 = 'interrupted' THEN 1 ELSE 0 END,
                 worker = CASE WHEN $26::bigint IS NULL THEN $29 ELSE worker END,
                 started_at = CASE WHEN $26::bigint IS NULL THEN $31 ELSE started_at END
             WHERE id = $15 AND EXISTS (SELECT 1 FROM repo)
             RETURNING attempts
         ), new_run AS (
             INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at, finished_at,
                 outcome, error, error_kind, refs_updated, refs_pruned, bytes_received,
                 unchanged, objects_received, refs_created, list_ms, fetch_ms,
                 housekeeping, housekeeping_ms)
             SELECT $1, $15, job.attempts, $29, $31, $31::timestamptz + make_interval(secs => $30),
                 $17, $4, $14, $18, $19, $20, $21, $22, $23, $24, $25, $32, $33
             FROM job WHERE $26::bigint IS NULL
             RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM repo), (SELECT attempts FROM job),
             (SELECT GREATEST(EXTRACT(EPOCH FROM now() - make_interval(secs => $30) - run_at), 0)::float8
              FROM job_ok),
             (SELECT count(*) FROM abandoned), (SELECT id FROM new_run)",
    )
    .bind(f.attempt.repo_id)
    .bind(f.attempt.fence)
    .bind(status)
    .bind(error)
    .bind(success)
    .bind(f.duration.as_millis() as i64)
    .bind(f.default_interval.as_secs_f64())
    .bind(settings::SYNC_INTERVAL)
    .bind(unchanged)
    .bind(f.max_interval.as_secs_f64())
    .bind(stops_schedule)
    .bind(f.hard_fail_after as i32)
    .bind(f.repo_name)
    .bind(kind.map(ErrorKind::as_str))
    .bind(f.attempt.job_id)
    .bind(f.notify_urls)
    .bind(f.ending.outcome().as_str())
    .bind(report.refs_changed() as i32)
    .bind(report.refs_pruned as i32)
    .bind(report.bytes_received as i64)
    .bind(report.unchanged)
    .bind(report.objects_received as i32)
    .bind(report.refs_created as i32)
    .bind(success.then_some(report.list_time.as_millis() as i32))
    .bind((success && !report.unchanged).then_some(report.fetch_time.as_millis() as i32))
    .bind(f.run_id)
    .bind(job_state)
    .bind(retry_delay.as_secs_f64())
    .bind(f.attempt.worker)
    .bind(f.duration.as_secs_f64())
    .bind(f.attempt.started_at)
    .bind(f.housekept.repack.map(|(kind, _)| kind.as_str()))
    .bind(f.housekept.repack.map(|(_, took)| took.as_millis() as i32))
    .bind(f.housekept.size_bytes.map(|b| b as i64))
    .fetch_one(pool)
    .await?;
    let (owned, attempt, waited, abandoned, run_id) = row;
    let started = match (attempt, run_id) {
        (Some(attempt), Some(run_id)) => Some(Started {
            attempt,
            run_id,
            waited_secs: waited.unwrap_or_default(),
            rescued: abandoned > 0,
        }),
        _ => None,
    };
    Ok(Finished { owned, started })
}
