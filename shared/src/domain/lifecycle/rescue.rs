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

/// A delivery that holds the repository's lease (fence `fence`) but cannot start yet
/// (its host at its cap, a shutdown before a permit came) ends, and its job waits in
/// Postgres for `delay`. A job still recorded as `running` is a dead worker's, since the
/// lease excludes any live one: it goes back to `pending` as [`requeue_running`] would,
/// because dropping the delivery would leave it running with nobody on it. `false` when
/// the job moved on, or a newer holder has started it.
pub async fn postpone_held(
    pool: &PgPool,
    job_id: Uuid,
    fence: i64,
    delay: std::time::Duration,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sync_jobs j SET state = 'pending', in_queue = false,
             run_at = GREATEST(j.run_at, now() + make_interval(secs => $2)),
             follow_up_reason = NULL, follow_up_at = NULL
         FROM repositories r
         WHERE j.id = $1 AND r.id = j.repo_id AND r.sync_fence < $3
           AND j.state IN ('pending', 'running')",
    )
    .bind(job_id)
    .bind(delay.as_secs_f64())
    .bind(fence)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
