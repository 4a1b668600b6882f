//! A worker's attempt: its start (the job `running`, the mirror `syncing`, a run row
//! opened) and its end (the [`policy`](super::policy) verdict written in one
//! transaction). Every write of results is fenced by the lease's fencing token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::fold;
use super::policy::{self, Attempted, End, Limits, NextSync, Outcome, Standing, Verdict};
use crate::db::settings;
use crate::domain::{ErrorKind, JobState, RunOutcome, SyncReason};

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

#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub attempt: i32,
    /// The run row that records the attempt: the one [`start`] opened; for an attempt
    /// [`finish`] started, the one it wrote, which is an earlier run's when the attempt
    /// was an unchanged check that folded into it.
    pub run_id: i64,
    /// Seconds from when the attempt was due (enqueue or end of its backoff) to its start.
    pub waited_secs: f64,
    /// An earlier attempt of this job was left open by a worker that died.
    pub rescued: bool,
}

/// Marks the job running and the repository syncing, and opens a run row. `None` when
/// the job is no longer runnable or a holder with a newer fence has already started.
/// One statement, atomic on its own: a no-op sync is mostly round trips to Postgres.
pub async fn start<'e, E>(executor: E, a: &Attempt<'_>) -> sqlx::Result<Option<Started>>
where
    E: sqlx::PgExecutor<'e>,
{
    Ok(claim(executor, a, true).await?.map(|c| Started {
        attempt: c.attempt,
        // a claim that opens its run always has one
        run_id: c.run_id.unwrap_or_default(),
        waited_secs: c.waited_secs,
        rescued: c.rescued,
    }))
}

/// An attempt [`claim`] recorded as started, with its run row if it opened one.
#[derive(Debug, Clone, Copy)]
struct Claimed {
    attempt: i32,
    run_id: Option<i64>,
    waited_secs: f64,
    rescued: bool,
}

/// [`start`]'s statement; without `open_run` it opens no run row, for [`finish`] to
/// write the run whole (or fold it into the previous one) in the same transaction.
async fn claim<'e, E>(executor: E, a: &Attempt<'_>, open_run: bool) -> sqlx::Result<Option<Claimed>>
where
    E: sqlx::PgExecutor<'e>,
{
    // Each step reads the one before it, so none runs unless all can: a job no longer
    // runnable moves no fence, a stale fence starts no attempt. A run still open belonged
    // to a worker that died mid-attempt; the new run is not visible to that UPDATE.
    let claimed: Option<(i32, f64, Option<i64>, i64)> = sqlx::query_as(
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
             RETURNING j.attempts,
                 GREATEST(EXTRACT(EPOCH FROM $5::timestamptz - j.run_at), 0)::float8 AS waited
         ), abandoned AS (
             UPDATE sync_runs SET finished_at = now(), outcome = 'abandoned',
                 error = 'worker stopped before finishing this attempt'
             WHERE job_id = $1 AND finished_at IS NULL AND EXISTS (SELECT 1 FROM attempt)
             RETURNING id
         ), run AS (
             INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at)
             SELECT $2, $1, attempts, $4, $5 FROM attempt WHERE $6
             RETURNING id
         )
         SELECT attempt.attempts, attempt.waited, run.id, (SELECT count(*) FROM abandoned)
         FROM attempt LEFT JOIN run ON true",
    )
    .bind(a.job_id)
    .bind(a.repo_id)
    .bind(a.fence)
    .bind(a.worker)
    .bind(a.started_at)
    .bind(open_run)
    .fetch_optional(executor)
    .await?;
    Ok(
        claimed.map(|(attempt, waited_secs, run_id, abandoned)| Claimed {
            attempt,
            run_id,
            waited_secs,
            rescued: abandoned > 0,
        }),
    )
}

/// What the run row records of the work itself.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub refs_created: i32,
    pub refs_updated: i32,
    pub refs_pruned: i32,
    pub bytes_received: i64,
    pub objects_received: i32,
    pub unchanged: bool,
    pub list_ms: Option<i32>,
    pub fetch_ms: Option<i32>,
    /// The repack after the fetch (`geometric` or `full`) and how long it took.
    pub housekeeping: Option<(&'static str, i32)>,
    /// A housekeeping pass still runs as this end is recorded: its figures land on the
    /// run afterwards ([`super::housekept`]), so the run is not one that only listed.
    pub housekeeping_after: bool,
    /// The mirror's objects on disk afterwards; `None` when nothing was written.
    pub size_bytes: Option<i64>,
    /// LFS objects downloaded and their bytes; `None` when no LFS step ran.
    pub lfs_objects: Option<i32>,
    pub lfs_bytes: Option<i64>,
    /// Why the LFS step failed or skipped objects; the git part stands regardless.
    pub lfs_error: Option<String>,
    /// grokmirror's fingerprint of the mirror's refs after a success.
    pub refs_fingerprint: Option<String>,
}

pub struct Finish<'a> {
    pub attempt: Attempt<'a>,
    /// What [`start`] recorded; `None` when the attempt was not recorded as started, so
    /// [`finish`] records its start too.
    pub started: Option<Started>,
    pub outcome: Outcome,
    /// The job's allowance of attempts, for retry-or-fail.
    pub allowed: i32,
    /// The failure (or interruption) as the run, job and mirror show it.
    pub error: Option<&'a str>,
    pub error_kind: Option<ErrorKind>,
    /// The sync's own work, from `attempt.started_at`: the run ends when it ends.
    pub duration: Duration,
    pub stats: RunStats,
    /// `mirror.sync_interval`, the base of a mirror without its own or an override.
    pub default_interval: Duration,
    pub limits: Limits,
    /// `owner/name`, for notifications.
    pub repo_name: &'a str,
    /// `notify.urls`: receivers of every mirror's events.
    pub notify_urls: &'a [String],
    /// `sync.max_attempts`, for a follow-up job this attempt's end opens.
    pub max_attempts: i32,
}

#[derive(Debug, Clone)]
pub struct Finished {
    /// The results were written: the fence held (and, without a recorded start, the job
    /// was still runnable).
    pub owned: bool,
    /// The attempt this call started, when [`start`] had not.
    pub started: Option<Started>,
    /// How the attempt ended, as decided; `None` when not owned.
    pub end: Option<End>,
    /// The run row that records the attempt (an earlier run's, when it folded into
    /// one); `None` when not owned.
    pub run_id: Option<i64>,
    /// A sync was requested while the attempt ran: the follow-up job this end opened,
    /// waiting for admission to its lane.
    pub follow_up: Option<crate::domain::SyncMirror>,
}

/// Records the attempt's end in one transaction. Not owned, writing only the run row
/// (`lost_lock`), when the repository's fence moved on: another worker owns the sync now
/// and its results win. Without a run from [`start`], it records the start first as
/// `start` would have (the run row written once, whole, at the end), and writes nothing
/// when `start` would have refused. An unchanged success folds into the mirror's
/// previous run when that one is an unchanged success too ([`fold`]).
pub async fn finish(pool: &PgPool, f: &Finish<'_>) -> sqlx::Result<Finished> {
    let mut tx = pool.begin().await?;
    let recorded = match f.started {
        Some(s) => Claimed {
            attempt: s.attempt,
            run_id: Some(s.run_id),
            waited_secs: s.waited_secs,
            rescued: s.rescued,
        },
        None => match claim(&mut *tx, &f.attempt, false).await? {
            Some(claimed) => claimed,
            None => {
                return Ok(Finished {
                    owned: false,
                    started: None,
                    end: None,
                    run_id: None,
                    follow_up: None,
                })
            }
        },
    };
    let attempted = Attempted {
        number: recorded.attempt,
        allowed: f.allowed,
    };
    let mut follow_up = None;
    let verdict = match standing(&mut tx, f).await? {
        Some(before) => {
            let verdict = policy::decide(before, f.outcome, attempted, f.limits, policy::jitter());
            write_mirror(&mut tx, f, &verdict).await?;
            if verdict.event.is_some() {
                notify(&mut tx, f, &verdict).await?;
            }
            if let Some((reason, due)) = write_job(&mut tx, f, &verdict).await? {
                follow_up = open_follow_up(&mut tx, f, reason, due).await?;
            }
            Some(verdict)
        }
        None => None,
    };
    let end = verdict.map(|v| v.end);
    let run_id = write_run(&mut tx, f, &recorded, end).await?;
    tx.commit().await?;
    Ok(Finished {
        owned: end.is_some(),
        started: f.started.is_none().then_some(Started {
            attempt: recorded.attempt,
            run_id,
            waited_secs: recorded.waited_secs,
            rescued: recorded.rescued,
        }),
        end,
        run_id: end.is_some().then_some(run_id),
        follow_up,
    })
}

/// The mirror's standing, its row locked; `None` when the fence moved on.
async fn standing(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
) -> sqlx::Result<Option<Standing>> {
    let row: Option<(i32, f64, f64, bool)> = sqlx::query_as(
        "SELECT consecutive_failures, interval_factor,
             COALESCE(sync_interval_secs::double precision,
                      (SELECT value::double precision FROM settings WHERE key = $3), $4),
             last_synced_at IS NOT NULL
         FROM repositories WHERE id = $1 AND sync_fence = $2 FOR UPDATE",
    )
    .bind(f.attempt.repo_id)
    .bind(f.attempt.fence)
    .bind(settings::SYNC_INTERVAL)
    .bind(f.default_interval.as_secs_f64())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(failures, factor, base, ever_synced)| Standing {
        consecutive_failures: failures,
        interval_factor: factor,
        base_interval: Duration::from_secs_f64(base.max(1.0)),
        ever_synced,
    }))
}

async fn write_mirror(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    v: &Verdict,
) -> sqlx::Result<()> {
    let (keep_schedule, next_in) = match v.next_sync {
        NextSync::Unchanged => (true, None),
        NextSync::Never => (false, None),
        NextSync::After(d) => (false, Some(d.as_secs_f64())),
    };
    sqlx::query(
        "UPDATE repositories SET sync_status = $2, sync_error = $3,
             last_synced_at = CASE WHEN $4 THEN now() ELSE last_synced_at END,
             last_duration_ms = $5, consecutive_failures = $6, interval_factor = $7,
             size_bytes = COALESCE($8, size_bytes),
             refs_fingerprint = CASE WHEN $4 THEN $11 ELSE refs_fingerprint END,
             next_sync_at = CASE WHEN $9 THEN next_sync_at
                                 ELSE now() + make_interval(secs => $10) END,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(f.attempt.repo_id)
    .bind(v.status)
    .bind(f.error)
    .bind(matches!(v.end, End::Success { .. }))
    .bind(f.duration.as_millis() as i64)
    .bind(v.consecutive_failures)
    .bind(v.interval_factor)
    .bind(f.stats.size_bytes)
    .bind(keep_schedule)
    .bind(next_in)
    .bind(&f.stats.refs_fingerprint)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The event, for every receiver: `notify.urls` and the owner's URL, each once.
async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    v: &Verdict,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (repo_id, event, url, payload)
         SELECT $1, $2, receivers.url, jsonb_build_object(
             'event', $2::text, 'repository', $3::text, 'sync_status', $4::text,
             'error', $5::text, 'error_kind', $6::text, 'consecutive_failures', $7::int,
             'job_id', $8::uuid, 'at', now())
         FROM (SELECT unnest($9::text[]) AS url
               UNION
               SELECT u.notify_url FROM repositories r JOIN users u ON u.id = r.owner_id
               WHERE r.id = $1 AND u.notify_url IS NOT NULL) receivers",
    )
    .bind(f.attempt.repo_id)
    .bind(v.event.map(policy::Event::as_str))
    .bind(f.repo_name)
    .bind(v.status)
    .bind(f.error)
    .bind(f.error_kind)
    .bind(v.consecutive_failures)
    .bind(f.attempt.job_id)
    .bind(f.notify_urls)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the job's end. A job pending again (a retry, an interruption) waits in
/// Postgres for a fresh delivery, and the attempt to come settles any follow-up it
/// owed; a job that ended returns the follow-up it owes, `(reason, due at)`.
async fn write_job(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    v: &Verdict,
) -> sqlx::Result<Option<(SyncReason, DateTime<Utc>)>> {
    let ended = v.job != JobState::Pending;
    let owed: (Option<SyncReason>, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH old AS (
             SELECT follow_up_reason, follow_up_at FROM sync_jobs WHERE id = $1
         )
         UPDATE sync_jobs SET state = $2, last_error = $3,
             run_at = now() + make_interval(secs => $4),
             finished_at = CASE WHEN $5 THEN now() END,
             attempts = attempts - CASE WHEN $6 THEN 0 ELSE 1 END,
             in_queue = $5 AND in_queue,
             follow_up_reason = NULL, follow_up_at = NULL
         FROM old WHERE id = $1
         RETURNING old.follow_up_reason, old.follow_up_at",
    )
    .bind(f.attempt.job_id)
    .bind(v.job)
    .bind(f.error)
    .bind(v.job_due_in.as_secs_f64())
    .bind(ended)
    .bind(v.attempt_counts)
    .fetch_one(&mut **tx)
    .await?;
    Ok(match owed {
        (Some(reason), Some(due)) if ended => Some((reason, due)),
        _ => None,
    })
}

/// Opens the follow-up job a sync requested during this attempt: `pending`, due when
/// the request's window allows, its repository `queued`.
async fn open_follow_up(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    reason: SyncReason,
    due: DateTime<Utc>,
) -> sqlx::Result<Option<crate::domain::SyncMirror>> {
    let job_id: Option<Uuid> = sqlx::query_scalar(
        "WITH job AS (
             INSERT INTO sync_jobs (id, repo_id, reason, max_attempts, run_at)
             VALUES (time_ordered_uuid(), $1, $2, $3, GREATEST(now(), $4))
             ON CONFLICT DO NOTHING
             RETURNING id
         ), queued AS (
             UPDATE repositories SET sync_status = 'queued', updated_at = now()
             WHERE id = $1 AND EXISTS (SELECT 1 FROM job)
         )
         SELECT id FROM job",
    )
    .bind(f.attempt.repo_id)
    .bind(reason)
    .bind(f.max_attempts)
    .bind(due)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(job_id.map(|job_id| crate::domain::SyncMirror {
        job_id,
        repo_id: f.attempt.repo_id,
        reason,
    }))
}

/// Writes the attempt's run and answers its row: the previous run's, when an unchanged
/// success folded into it (the row `start` opened, if any, then gone); otherwise the row
/// `start` opened, now finished, or one written whole, after which the previous run's
/// latest check's job goes.
async fn write_run(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    recorded: &Claimed,
    end: Option<End>,
) -> sqlx::Result<i64> {
    if let Some(End::Success { unchanged: true }) = end {
        if let Some(folded) = fold::unchanged_check(tx, f, recorded.run_id).await? {
            return Ok(folded);
        }
    }
    let outcome = match end {
        None => RunOutcome::LostLock,
        Some(End::Success { .. }) => RunOutcome::Success,
        Some(End::Retry { .. }) => RunOutcome::Retrying,
        Some(End::Failed { .. }) => RunOutcome::Failed,
        Some(End::Interrupted) => RunOutcome::Interrupted,
    };
    let run = match recorded.run_id {
        Some(id) => {
            let finished = sqlx::query_scalar(
                "UPDATE sync_runs SET finished_at = $2::timestamptz + make_interval(secs => $3),
                     outcome = $4, error = $5, error_kind = $6, refs_updated = $7,
                     refs_pruned = $8, bytes_received = $9, unchanged = $10,
                     objects_received = $11, refs_created = $12, list_ms = $13, fetch_ms = $14,
                     housekeeping = $15, housekeeping_ms = $16,
                     lfs_objects = $17, lfs_bytes = $18, lfs_error = $19
                 WHERE id = $1 RETURNING id",
            )
            .bind(id);
            bind_figures(finished, f, outcome)
                .fetch_one(&mut **tx)
                .await
        }
        None => {
            let whole = sqlx::query_scalar(
                "INSERT INTO sync_runs (attempt, started_at, finished_at, outcome, error,
                     error_kind, refs_updated, refs_pruned, bytes_received, unchanged,
                     objects_received, refs_created, list_ms, fetch_ms, housekeeping,
                     housekeeping_ms, lfs_objects, lfs_bytes, lfs_error,
                     repo_id, job_id, worker)
                 VALUES ($1, $2, $2::timestamptz + make_interval(secs => $3), $4, $5, $6, $7,
                     $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
                 RETURNING id",
            )
            .bind(recorded.attempt);
            bind_figures(whole, f, outcome)
                .bind(f.attempt.repo_id)
                .bind(f.attempt.job_id)
                .bind(f.attempt.worker)
                .fetch_one(&mut **tx)
                .await
        }
    }?;
    fold::retire_earlier_jobs(tx, f.attempt.repo_id, run, f.attempt.job_id).await?;
    Ok(run)
}

/// Binds `$2` to `$19` of a statement that writes a run's end: its start, duration,
/// outcome, error and figures.
fn bind_figures<'q>(
    q: QueryScalar<'q, Postgres, i64, PgArguments>,
    f: &'q Finish<'_>,
    outcome: RunOutcome,
) -> QueryScalar<'q, Postgres, i64, PgArguments> {
    let s = &f.stats;
    q.bind(f.attempt.started_at)
        .bind(f.duration.as_secs_f64())
        .bind(outcome)
        .bind(f.error)
        .bind(f.error_kind)
        .bind(s.refs_updated)
        .bind(s.refs_pruned)
        .bind(s.bytes_received)
        .bind(s.unchanged)
        .bind(s.objects_received)
        .bind(s.refs_created)
        .bind(s.list_ms)
        .bind(s.fetch_ms)
        .bind(s.housekeeping.map(|(kind, _)| kind))
        .bind(s.housekeeping.map(|(_, ms)| ms))
        .bind(s.lfs_objects)
        .bind(s.lfs_bytes)
        .bind(&s.lfs_error)
}
