//! Manual and webhook syncs of one mirror coalesce: a request soon after the last sync
//! started gets a job deferred to the end of the window instead of a fetch now.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::SyncReason;

/// How a manual or webhook request is coalesced with the mirror's recent syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// No coalescing beyond the pending job (scheduler, imports, tooling).
    None,
    /// At most one sync start per this interval.
    Min(Duration),
    /// An operator's override: a deferred job is made due now.
    Force,
}

/// A repository's pending or running job.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Active {
    pub id: Uuid,
    pub repo_id: Uuid,
    pub reason: SyncReason,
    /// When it is due.
    pub run_at: DateTime<Utc>,
    /// Pending (not running).
    pub pending: bool,
    /// Pending, and last delivered before Redis lost its data (an older epoch): its
    /// delivery may be gone.
    pub undelivered: bool,
    /// Its delivery is in its lane (not waiting in Postgres for room or for its time).
    pub in_queue: bool,
}

/// The repository's pending or running job.
pub async fn active<'e, E>(executor: E, repo_id: Uuid) -> sqlx::Result<Option<Active>>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_as(concat!(
        "SELECT id, repo_id, reason, run_at, in_queue, ",
        crate::job_pending!("j"),
        " AS pending, ",
        crate::job_pending!("j"),
        " AND in_queue AND delivery_epoch < current_redis_epoch() AS undelivered
         FROM sync_jobs j WHERE repo_id = $1 AND ",
        crate::job_active!("j")
    ))
    .bind(repo_id)
    .fetch_optional(executor)
    .await
}

/// Moves a job just claimed to `gap` after the repository's last sync start when that
/// is later than its due time; returns when it is due. Runs in the claim's transaction,
/// under its row lock, so concurrent requests see the deferred job.
pub async fn defer(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    repo_id: Uuid,
    gap: Duration,
) -> sqlx::Result<DateTime<Utc>> {
    // the mirror's newest run (one probe of `sync_runs_repo_newest`) holds its last
    // start: its own, or its latest check's when unchanged checks folded into it;
    // GREATEST ignores the NULL of a mirror that never synced
    sqlx::query_scalar(
        "UPDATE sync_jobs SET run_at = GREATEST(run_at,
             (SELECT COALESCE(last_checked_at, started_at) FROM sync_runs WHERE repo_id = $2
              ORDER BY started_at DESC, id DESC LIMIT 1)
                 + make_interval(secs => $3))
         WHERE id = $1 RETURNING run_at",
    )
    .bind(job_id)
    .bind(repo_id)
    .bind(gap.as_secs_f64())
    .fetch_one(&mut **tx)
    .await
}

/// An operator's forced sync: a deferred pending job becomes due now. `false` when the
/// job was not waiting (already due, running or gone).
pub async fn advance(pool: &PgPool, job_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "UPDATE sync_jobs j SET run_at = now() WHERE id = $1 AND run_at > now() AND ",
        crate::job_pending!("j")
    ))
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A request that found the repository's job running: its attempt may have listed the
/// upstream's refs already, so one follow-up job runs after it (however many requests
/// arrive meanwhile), due no earlier than `window` allows after the attempt's start.
/// `false` when the job was not running (it ended meanwhile, or had not started).
pub async fn follow_up(
    pool: &PgPool,
    job_id: Uuid,
    reason: SyncReason,
    window: Window,
) -> sqlx::Result<bool> {
    let gap = match window {
        Window::Min(gap) => gap.as_secs_f64(),
        Window::None | Window::Force => 0.0,
    };
    let done = sqlx::query(concat!(
        "UPDATE sync_jobs j SET follow_up_reason = $2,
             follow_up_at = LEAST(COALESCE(j.follow_up_at, 'infinity'),
                 GREATEST(now(), COALESCE(j.started_at, now()) + make_interval(secs => $3)))
         WHERE j.id = $1 AND ",
        crate::job_running!("j")
    ))
    .bind(job_id)
    .bind(reason)
    .bind(gap)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
