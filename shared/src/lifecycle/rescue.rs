//! A running job whose worker is gone goes back to pending (the reaper and the
//! leader's recovery find them; see `scheduler`).

use sqlx::PgPool;
use uuid::Uuid;

/// A running job whose worker is gone goes back to pending, due now, with a delivery in
/// the current epoch (the caller pushes it). `false` when it moved on meanwhile.
pub async fn requeue_running(pool: &PgPool, job_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sync_jobs SET state = 'pending', run_at = now(), delivery_epoch = current_redis_epoch()
         WHERE id = $1 AND state = 'running'",
    )
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
