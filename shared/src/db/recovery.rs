//! The queries behind recovery: jobs whose worker died, and pending jobs whose delivery
//! Redis may have lost (see the `redis_epoch` migration).

use std::collections::HashSet;
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
pub(crate) async fn mark_delivered(pool: &PgPool, ids: &[Uuid], epoch: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_jobs SET delivery_epoch = $2 WHERE id = ANY($1) AND delivery_epoch < $2",
    )
    .bind(ids)
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(())
}

/// A pending job whose delivery Redis may have lost (delivered in an older epoch) waits
/// in Postgres for a fresh one. `false` when it was not in that case.
pub async fn forget_delivery(pool: &PgPool, job_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "UPDATE sync_jobs j SET in_queue = false
         WHERE j.id = $1 AND j.in_queue AND j.delivery_epoch < current_redis_epoch() AND ",
        crate::job_pending!("j")
    ))
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Of `batch`, pending jobs last delivered before `epoch`: those whose delivery Redis
/// still holds (in `present`) are recorded as delivered in `epoch`; the others wait in
/// Postgres for a fresh one. Returns how many wait again.
pub async fn forget_lost(
    pool: &PgPool,
    batch: &[Uuid],
    present: &HashSet<Uuid>,
    epoch: i64,
) -> sqlx::Result<u64> {
    let (kept, lost): (Vec<Uuid>, Vec<Uuid>) = batch.iter().partition(|id| present.contains(id));
    mark_delivered(pool, &kept, epoch).await?;
    let done = sqlx::query(concat!(
        "UPDATE sync_jobs j SET in_queue = false, delivery_epoch = $2
         WHERE j.id = ANY($1) AND j.in_queue AND ",
        crate::job_pending!("j")
    ))
    .bind(&lost)
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
