//! What people do to a job or a mirror's status: an operator's retry and discard, an
//! owner's new upstream.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::JobState;

/// Why an operator's retry or discard was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// The job is in a state the action does not apply to.
    State(JobState),
    /// The repository already has this other pending or running job.
    Busy(Uuid),
}

/// Locks the job's repository row (serialising with `opening::open`) and returns the
/// job's state.
async fn lock_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> sqlx::Result<Option<(Uuid, JobState)>> {
    sqlx::query_as(
        "SELECT j.repo_id, j.state FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
         WHERE j.id = $1 FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Sends a failed or dead job back to `pending` with `extra_attempts` more attempts
/// (history keeps counting from where it stopped), waiting for admission to its lane.
/// Returns the state it had.
pub async fn retry(
    pool: &PgPool,
    job_id: Uuid,
    extra_attempts: i32,
) -> sqlx::Result<Result<JobState, Refused>> {
    let mut tx = pool.begin().await?;
    let Some((repo_id, state)) = lock_job(&mut tx, job_id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    if !matches!(state, JobState::Failed | JobState::Dead) {
        return Ok(Err(Refused::State(state)));
    }
    if let Some(other) = super::opening::active_job(&mut *tx, repo_id).await? {
        return Ok(Err(Refused::Busy(other)));
    }
    sqlx::query(
        "UPDATE sync_jobs SET state = 'pending', max_attempts = attempts + $2, run_at = now(),
             finished_at = NULL, in_queue = false
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(extra_attempts)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE repositories SET sync_status = 'queued', updated_at = now() WHERE id = $1")
        .bind(repo_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(state))
}

/// Moves a pending or failed job to `dead`: it will not run, and a pending job's
/// repository returns to the status its last sync left. A running attempt cannot be
/// cut short from here; it is refused.
pub async fn discard(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Result<JobState, Refused>> {
    let mut tx = pool.begin().await?;
    let Some((repo_id, state)) = lock_job(&mut tx, job_id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    if !matches!(state, JobState::Pending | JobState::Failed) {
        return Ok(Err(Refused::State(state)));
    }
    sqlx::query("UPDATE sync_jobs SET state = 'dead', finished_at = now() WHERE id = $1")
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(concat!(
        "UPDATE repositories r SET updated_at = now(), sync_status = ",
        super::settled!(),
        " WHERE r.id = $1 AND r.sync_status = 'queued'"
    ))
    .bind(repo_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(state))
}

/// A mirror given a new upstream starts afresh: a `hard_failed` one is merely `failed`
/// (scheduled again, due now) until its next sync says otherwise. Runs in the settings'
/// transaction.
pub async fn new_upstream(tx: &mut Transaction<'_, Postgres>, repo_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE repositories SET sync_status = 'failed'
         WHERE id = $1 AND sync_status = 'hard_failed'",
    )
    .bind(repo_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
