//! What the worker writes to Postgres: one transaction when an attempt starts, one when
//! it ends. Every write of results is fenced by the lease's fencing token.

use std::time::Duration;

use sqlx::PgPool;
use stasis_shared::db::{jobs, notifications, repos, settings};
use stasis_shared::domain::{ErrorKind, RunOutcome};
use stasis_shared::git::fetch::{FetchError, FetchReport};
use uuid::Uuid;

pub async fn load(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<(jobs::Job, repos::Repo)>> {
    let Some(job) = jobs::find(pool, job_id).await? else {
        return Ok(None);
    };
    Ok(repos::find(pool, job.repo_id)
        .await?
        .map(|repo| (job, repo)))
}

#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub attempt: i32,
    pub run_id: i64,
    /// Seconds from when the attempt was due (enqueue or end of its backoff) to now.
    pub waited_secs: f64,
    /// An earlier attempt of this job was left open by a worker that died.
    pub rescued: bool,
}

/// Marks the job running and the repository syncing, and opens a run row. `None` when
/// the job is no longer runnable or a holder with a newer fence has already started.
pub async fn start(
    pool: &PgPool,
    job_id: Uuid,
    repo_id: Uuid,
    worker: &str,
    fence: i64,
) -> sqlx::Result<Option<Started>> {
    let mut tx = pool.begin().await?;
    let fenced = sqlx::query(
        "UPDATE repositories SET sync_fence = $2, sync_status = 'syncing', updated_at = now()
         WHERE id = $1 AND sync_fence < $2",
    )
    .bind(repo_id)
    .bind(fence)
    .execute(&mut *tx)
    .await?;
    if fenced.rows_affected() == 0 {
        return Ok(None);
    }
    let attempt: Option<(i32, f64)> = sqlx::query_as(
        "UPDATE sync_jobs SET state = 'running', attempts = attempts + 1, worker = $2,
             started_at = now()
         WHERE id = $1 AND state IN ('pending', 'running')
         RETURNING attempts, GREATEST(EXTRACT(EPOCH FROM now() - run_at), 0)::float8",
    )
    .bind(job_id)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attempt, waited_secs)) = attempt else {
        return Ok(None);
    };
    // A run still open here belonged to a worker that died mid-attempt.
    let abandoned = sqlx::query(
        "UPDATE sync_runs SET finished_at = now(), outcome = 'abandoned',
             error = 'worker stopped before finishing this attempt'
         WHERE job_id = $1 AND finished_at IS NULL",
    )
    .bind(job_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(repo_id)
    .bind(job_id)
    .bind(attempt)
    .bind(worker)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Started {
        attempt,
        run_id,
        waited_secs,
        rescued: abandoned > 0,
    }))
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
}

impl Ending<'_> {
    pub fn outcome(&self) -> RunOutcome {
        match self {
            Ending::Success(_) => RunOutcome::Success,
            Ending::Retry { .. } => RunOutcome::Retrying,
            Ending::Failed(_) => RunOutcome::Failed,
        }
    }
}

pub struct Finish<'a> {
    pub job_id: Uuid,
    pub repo_id: Uuid,
    pub run_id: i64,
    pub fence: i64,
    pub duration: Duration,
    pub default_interval: Duration,
    /// `mirror.max_sync_interval` and `mirror.hard_fail_after`.
    pub max_interval: Duration,
    pub hard_fail_after: u32,
    /// `owner/name`, for notifications.
    pub repo_name: &'a str,
    /// `notify.urls`: receivers of every mirror's events.
    pub notify_urls: &'a [String],
    pub ending: Ending<'a>,
}

/// Records the attempt's end. Returns `false`, writing only the run row, when the
/// repository's fence moved on: another worker owns the sync now and its results win.
pub async fn finish(pool: &PgPool, f: &Finish<'_>) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let (status, error, kind): (&str, Option<String>, Option<ErrorKind>) = match &f.ending {
        Ending::Success(_) => ("success", None, None),
        Ending::Retry { error, .. } => ("queued", Some(error.message.clone()), Some(error.kind)),
        Ending::Failed(error) => ("failed", Some(error.message.clone()), Some(error.kind)),
    };
    let success = matches!(f.ending, Ending::Success(_));
    let unchanged = matches!(f.ending, Ending::Success(r) if r.unchanged);
    let stops_schedule = kind.is_some_and(ErrorKind::stops_schedule);
    // The next sync: the mirror's base interval (its own, the run-time override or the
    // default) times a factor that unchanged syncs grow by half up to
    // mirror.max_sync_interval and changed ones halve back to 1; failures back off
    // doubling up to the same cap, and past mirror.hard_fail_after (or at once for
    // auth and not-found) the mirror is hard_failed and unscheduled. ±10% jitter keeps
    // mirrors imported together from firing in the same second forever.
    let repo: Option<(String, i32)> = sqlx::query_as(
        "WITH b AS (
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
         )
         UPDATE repositories r SET
             sync_status = CASE WHEN $3 = 'failed' AND c.hard THEN 'hard_failed' ELSE $3 END,
             sync_error = $4,
             last_synced_at = CASE WHEN $5 THEN now() ELSE r.last_synced_at END,
             last_duration_ms = $6,
             consecutive_failures = CASE $3 WHEN 'success' THEN 0
                                            WHEN 'failed' THEN c.n + 1 ELSE c.n END,
             interval_factor = CASE WHEN $3 = 'success' THEN c.f_ok ELSE r.interval_factor END,
             next_sync_at = CASE
                 WHEN $3 = 'queued' THEN r.next_sync_at
                 WHEN $3 = 'failed' AND c.hard THEN NULL
                 WHEN $3 = 'failed' THEN now() + make_interval(secs =>
                     GREATEST(c.base, LEAST(c.base * power(2, c.n), $10)) * (0.9 + random() * 0.2))
                 ELSE now() + make_interval(secs =>
                     GREATEST(c.base, LEAST(c.base * c.f_ok, $10)) * (0.9 + random() * 0.2))
                 END,
             updated_at = now()
         FROM c WHERE r.id = c.id AND r.sync_fence = $2
         RETURNING r.sync_status, c.n",
    )
    .bind(f.repo_id)
    .bind(f.fence)
    .bind(status)
    .bind(&error)
    .bind(success)
    .bind(f.duration.as_millis() as i64)
    .bind(f.default_interval.as_secs_f64())
    .bind(settings::SYNC_INTERVAL)
    .bind(unchanged)
    .bind(f.max_interval.as_secs_f64())
    .bind(stops_schedule)
    .bind(f.hard_fail_after as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let owned = repo.is_some();
    if let Some((new_status, failures_before)) = &repo {
        if let Some(event) = transition(new_status, *failures_before) {
            let payload = serde_json::json!({
                "event": event,
                "repository": f.repo_name,
                "sync_status": new_status,
                "error": error,
                "error_kind": kind.map(ErrorKind::as_str),
                "consecutive_failures": if new_status == "success" { 0 } else { failures_before + 1 },
                "job_id": f.job_id,
                "at": chrono::Utc::now(),
            });
            notifications::record(&mut tx, f.repo_id, event, &payload, f.notify_urls).await?;
        }
    }

    let report = match &f.ending {
        Ending::Success(report) => (*report).clone(),
        _ => FetchReport::default(),
    };
    let outcome = if owned {
        f.ending.outcome()
    } else {
        RunOutcome::LostLock
    };
    sqlx::query(
        "UPDATE sync_runs SET finished_at = now(), outcome = $2, error = $3, error_kind = $4,
             refs_updated = $5, refs_pruned = $6, bytes_received = $7, unchanged = $8,
             objects_received = $9, refs_created = $10, list_ms = $11, fetch_ms = $12
         WHERE id = $1",
    )
    .bind(f.run_id)
    .bind(outcome.as_str())
    .bind(&error)
    .bind(kind.map(ErrorKind::as_str))
    .bind(report.refs_changed() as i32)
    .bind(report.refs_pruned as i32)
    .bind(report.bytes_received as i64)
    .bind(report.unchanged)
    .bind(report.objects_received as i32)
    .bind(report.refs_created as i32)
    .bind(success.then_some(report.list_time.as_millis() as i32))
    .bind((success && !report.unchanged).then_some(report.fetch_time.as_millis() as i32))
    .execute(&mut *tx)
    .await?;

    if owned {
        let (state, delay) = match &f.ending {
            Ending::Success(_) => ("done", Duration::ZERO),
            Ending::Retry { delay, .. } => ("pending", *delay),
            Ending::Failed(_) => ("failed", Duration::ZERO),
        };
        sqlx::query(
            "UPDATE sync_jobs SET state = $2, last_error = $3,
                 run_at = now() + make_interval(secs => $4),
                 finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
             WHERE id = $1",
        )
        .bind(f.job_id)
        .bind(state)
        .bind(&error)
        .bind(delay.as_secs_f64())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(owned)
}

/// The event a finished sync announces: the first failure after a success, every sync
/// that leaves the mirror hard_failed (a threshold crossed, or a manual retry that
/// failed again), and a success after failures.
fn transition(new_status: &str, failures_before: i32) -> Option<&'static str> {
    match new_status {
        "failed" if failures_before == 0 => Some("failed"),
        "hard_failed" => Some("hard_failed"),
        "success" if failures_before > 0 => Some("recovered"),
        _ => None,
    }
}
