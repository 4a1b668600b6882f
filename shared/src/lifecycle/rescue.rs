//! A running job whose worker is gone goes back to pending (the reaper and the
//! leader's recovery find them; see `scheduler`).

use sqlx::PgPool;
use uuid::Uuid;

/// A running job whose worker is gone goes back to pending, due now, waiting for a fresh
/// delivery (the caller admits it, or the dispatcher does). Any follow-up it owed is
/// settled by the attempt to come, which lists the upstream's refs anew. `false` when it
/// moved on meanwhile.
pub async fn requeue_running(pool: &PgPool, job_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sync_jobs SET state = 'pending', run_at = now(), in_queue = false,
             follow_up_reason = NULL, follow_up_at = NULL
         WHERE id = $1 AND state = 'running'",
    )
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
