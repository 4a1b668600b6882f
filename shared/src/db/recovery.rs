//! The queries behind recovery: jobs whose worker died, and pending jobs whose delivery
//! Redis may have lost (see the `redis_epoch` migration).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::SyncReason;

/// A job to deliver again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Orphan {
    pub id: Uuid,
    pub repo_id: Uuid,
    pub reason: SyncReason,
    pub run_at: DateTime<Utc>,
    /// The worker that last started it.
    pub worker: Option<String>,
}

/// Running jobs whose worker's registry row has not been refreshed within `window`
/// (or is gone): their worker is dead, or cut off from Postgres.
pub async fn running_on_silent_workers(
    pool: &PgPool,
    window: Duration,
    limit: i64,
) -> sqlx::Result<Vec<Orphan>> {
    sqlx::query_as(concat!(
        "SELECT j.id, j.repo_id, j.reason, j.run_at, j.worker FROM sync_jobs j WHERE ",
        crate::job_running!("j"),
        " AND NOT EXISTS (SELECT 1 FROM workers w WHERE w.name = j.worker
                           AND w.last_heartbeat_at > now() - make_interval(secs => $1))
         ORDER BY j.started_at LIMIT $2"
    ))
    .bind(window.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The epoch deliveries are pushed in now.
pub async fn current_epoch(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT current_redis_epoch()")
        .fetch_one(pool)
        .await
}

/// Starts a new epoch: every pending job delivered before it is suspect.
pub async fn next_epoch(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT nextval('redis_epoch')")
        .fetch_one(pool)
        .await
}

/// Pending jobs last delivered before `epoch`, in id order after `after`.
pub async fn delivered_before(
    pool: &PgPool,
    epoch: i64,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Orphan>> {
    sqlx::query_as(concat!(
        "SELECT id, repo_id, reason, run_at, worker FROM sync_jobs j WHERE ",
        crate::job_pending!("j"),
        " AND delivery_epoch < $1
           AND id > COALESCE($2, '00000000-0000-0000-0000-000000000000'::uuid)
         ORDER BY id LIMIT $3"
    ))
    .bind(epoch)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Records that these jobs' deliveries are in Redis as of `epoch`.
pub async fn mark_delivered(pool: &PgPool, ids: &[Uuid], epoch: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_jobs SET delivery_epoch = $2 WHERE id = ANY($1) AND delivery_epoch < $2",
    )
    .bind(ids)
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(())
}

/// A pending job delivered in an older epoch, taken for one re-delivery: `Some` (its
/// old epoch) for exactly one of concurrent callers. Undone by [`unmark_delivered`] if
/// the push fails.
pub async fn take_redelivery(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(concat!(
        "UPDATE sync_jobs j SET delivery_epoch = current_redis_epoch()
         FROM (SELECT delivery_epoch AS before FROM sync_jobs WHERE id = $1) old
         WHERE j.id = $1 AND j.delivery_epoch < current_redis_epoch() AND ",
        crate::job_pending!("j"),
        " RETURNING old.before"
    ))
    .bind(job_id)
    .fetch_optional(pool)
    .await
}

pub async fn unmark_delivered(pool: &PgPool, job_id: Uuid, epoch: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE sync_jobs SET delivery_epoch = $2 WHERE id = $1")
        .bind(job_id)
        .bind(epoch)
        .execute(pool)
        .await?;
    Ok(())
}
