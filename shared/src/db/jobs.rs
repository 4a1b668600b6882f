use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{JobState, SyncReason};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub repo_id: Uuid,
    /// `owner/name` of the repository.
    pub repo: String,
    pub reason: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub worker: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Result of asking for a job for a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub job_id: Uuid,
    /// `false`: a pending or running job already existed and is returned instead.
    pub created: bool,
}

/// Inserts a pending job unless the repository already has one pending or running
/// (the partial unique index decides, so concurrent callers cannot both win).
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: Uuid,
    reason: SyncReason,
    max_attempts: i32,
) -> sqlx::Result<Option<Claimed>> {
    // Lock the repository row first: it serialises claims for one repository and keeps
    // the row (and its status) stable until commit.
    let exists: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM repositories WHERE id = $1 FOR UPDATE")
            .bind(repo_id)
            .fetch_optional(&mut **tx)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    if let Some(existing) = active_job(&mut **tx, repo_id).await? {
        return Ok(Some(Claimed {
            job_id: existing,
            created: false,
        }));
    }
    let job_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, max_attempts) VALUES ($1, $2, $3, $4)",
    )
    .bind(job_id)
    .bind(repo_id)
    .bind(reason.as_str())
    .bind(max_attempts)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE repositories SET sync_status = 'queued', updated_at = now() WHERE id = $1")
        .bind(repo_id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(Claimed {
        job_id,
        created: true,
    }))
}

pub async fn active_job<'e, E>(executor: E, repo_id: Uuid) -> sqlx::Result<Option<Uuid>>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar(
        "SELECT id FROM sync_jobs WHERE repo_id = $1 AND state IN ('pending', 'running')",
    )
    .bind(repo_id)
    .fetch_optional(executor)
    .await
}

const SELECT: &str = "SELECT j.id, j.repo_id, u.username || '/' || r.name AS repo, j.reason,
    j.state, j.attempts, j.max_attempts, j.last_error, j.run_at, j.worker, j.enqueued_at,
    j.started_at, j.finished_at
    FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id JOIN users u ON u.id = r.owner_id";

/// A repository's status once it has no job waiting: what its last sync left.
const SETTLED_STATUS: &str = "CASE
    WHEN r.sync_error IS NOT NULL AND r.next_sync_at IS NULL AND r.consecutive_failures > 0
        THEN 'hard_failed'
    WHEN r.sync_error IS NOT NULL THEN 'failed'
    WHEN r.last_synced_at IS NULL THEN 'idle' ELSE 'success' END";

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as::<_, Job>(&format!("{SELECT} WHERE j.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// What an operator filters the job list by; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    /// `(owner, name)`
    pub repo: Option<(String, String)>,
}

/// One page of jobs, newest first, and how many match in all.
pub async fn list(
    pool: &PgPool,
    filter: &JobFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Job>, i64)> {
    let mut tx = super::snapshot(pool).await?;
    let state = filter.state.map(JobState::as_str);
    let (owner, name) = filter
        .repo
        .as_ref()
        .map(|(o, n)| (Some(o.as_str()), Some(n.as_str())))
        .unwrap_or_default();
    let filtered = "WHERE ($1::text IS NULL OR j.state = $1)
        AND ($2::text IS NULL OR u.username = $2) AND ($3::text IS NULL OR r.name = $3)";
    let jobs = sqlx::query_as::<_, Job>(&format!(
        "{SELECT} {filtered} ORDER BY j.enqueued_at DESC, j.id LIMIT $4 OFFSET $5"
    ))
    .bind(state)
    .bind(owner)
    .bind(name)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *tx)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
         JOIN users u ON u.id = r.owner_id {filtered}"
    ))
    .bind(state)
    .bind(owner)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((jobs, total))
}

/// Jobs per state, and the age in seconds of the oldest pending one.
pub async fn depth(pool: &PgPool) -> sqlx::Result<(Vec<(String, i64)>, Option<f64>)> {
    let counts = sqlx::query_as("SELECT state, count(*) FROM sync_jobs GROUP BY state")
        .fetch_all(pool)
        .await?;
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - min(enqueued_at))::float8
         FROM sync_jobs WHERE state = 'pending'",
    )
    .fetch_one(pool)
    .await?;
    Ok((counts, oldest))
}

/// Why an operator's retry or discard was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotFound,
    /// The job is in a state the action does not apply to.
    State(JobState),
    /// The repository already has this other pending or running job.
    Busy(Uuid),
}

/// Locks the job's repository row (serialising with `claim`) and returns the job's state.
async fn lock_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> sqlx::Result<Option<(Uuid, JobState)>> {
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT j.repo_id, j.state FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
         WHERE j.id = $1 FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(repo, state)| (repo, state.parse().unwrap_or(JobState::Dead))))
}

/// Sends a failed or dead job back to `pending` with `extra_attempts` more attempts
/// (history keeps counting from where it stopped). Returns the state it had, for
/// [`restore`] should its delivery fail to reach Redis.
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
    if let Some(other) = active_job(&mut *tx, repo_id).await? {
        return Ok(Err(Refused::Busy(other)));
    }
    sqlx::query(
        "UPDATE sync_jobs SET state = 'pending', max_attempts = attempts + $2, run_at = now(),
             finished_at = NULL
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

/// Undoes [`retry`] when the job's delivery could not be pushed.
pub async fn restore(pool: &PgPool, job_id: Uuid, state: JobState) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "WITH j AS (
            UPDATE sync_jobs SET state = $2, finished_at = now()
            WHERE id = $1 AND state = 'pending' RETURNING repo_id
        )
        UPDATE repositories r SET sync_status = {SETTLED_STATUS}, updated_at = now()
        FROM j WHERE r.id = j.repo_id AND r.sync_status = 'queued'"
    ))
    .bind(job_id)
    .bind(state.as_str())
    .execute(pool)
    .await?;
    Ok(())
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
    sqlx::query(&format!(
        "UPDATE repositories r SET sync_status = {SETTLED_STATUS}, updated_at = now()
         WHERE r.id = $1 AND r.sync_status = 'queued'"
    ))
    .bind(repo_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(state))
}

/// Where a scheduler tick's claims have reached, in `(next_sync_at, id)` order.
pub type DueCursor = (DateTime<Utc>, Uuid);

/// Jobs a claim created, `(job_id, repo_id)`, and where the next claim of the tick starts.
#[derive(Debug, Default)]
pub struct DueClaim {
    pub jobs: Vec<(Uuid, Uuid)>,
    pub reached: Option<DueCursor>,
}

/// Claims jobs for up to `limit` due mirrors in one statement, oldest due first, after
/// `after` when an earlier claim of the same tick stopped there. A mirror skipped because
/// another transaction held its row is due again for the next tick, which starts over.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    max_attempts: i32,
    after: Option<DueCursor>,
) -> sqlx::Result<DueClaim> {
    let rows: Vec<(Uuid, Uuid, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "WITH due AS (
            SELECT r.id, r.next_sync_at FROM repositories r
            WHERE r.is_mirror AND r.mirror_enabled AND r.next_sync_at <= now()
              AND (r.next_sync_at, r.id) > (COALESCE($3, '-infinity'::timestamptz),
                                            COALESCE($4, '00000000-0000-0000-0000-000000000000'::uuid))
              AND NOT EXISTS (SELECT 1 FROM sync_jobs j
                              WHERE j.repo_id = r.id AND j.state IN ('pending', 'running'))
            ORDER BY r.next_sync_at, r.id
            LIMIT $1
            FOR UPDATE OF r SKIP LOCKED
        ), jobs AS (
            INSERT INTO sync_jobs (id, repo_id, reason, max_attempts)
            SELECT gen_random_uuid(), id, 'scheduled', $2 FROM due
            ON CONFLICT DO NOTHING
            RETURNING id, repo_id
        ), queued AS (
            -- by primary key: joined to `jobs`, the planner hashed the whole table for
            -- every batch (about 140 ms per 5,000 of 100,000 mirrors)
            UPDATE repositories r SET sync_status = 'queued', updated_at = now()
            WHERE r.id = ANY (ARRAY(SELECT repo_id FROM jobs))
        ), reached AS (
            SELECT next_sync_at, id FROM due ORDER BY next_sync_at DESC, id DESC LIMIT 1
        )
        -- uncorrelated, so evaluated once: a join of `jobs` to `due` was planned as a
        -- nested loop over both (both estimated at one row)
        SELECT id, repo_id, (SELECT next_sync_at FROM reached), (SELECT id FROM reached)
        FROM jobs",
    )
    .bind(limit)
    .bind(max_attempts)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .fetch_all(pool)
    .await?;
    Ok(DueClaim {
        reached: rows.first().map(|&(_, _, at, id)| (at, id)),
        jobs: rows
            .into_iter()
            .map(|(job, repo, _, _)| (job, repo))
            .collect(),
    })
}

/// Undoes `claim`/`claim_due` for jobs whose push to Redis failed, so no repository is
/// left `queued` behind a job nobody will run; due mirrors stay due for the next tick.
pub async fn unclaim(pool: &PgPool, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "WITH gone AS (
            DELETE FROM sync_jobs WHERE id = ANY($1) AND state = 'pending' AND attempts = 0
            RETURNING repo_id
        )
        UPDATE repositories r SET updated_at = now(), sync_status = {SETTLED_STATUS}
        FROM gone WHERE r.id = gone.repo_id AND r.sync_status = 'queued'"
    ))
    .bind(job_ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Jobs marked running that started longer than `older_than` ago (id, repo, reason):
/// candidates for the reaper, which checks each one's repository lock before touching it.
pub async fn running_since(
    pool: &PgPool,
    older_than: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, String)>> {
    sqlx::query_as(
        "SELECT id, repo_id, reason FROM sync_jobs
         WHERE state = 'running' AND started_at < now() - make_interval(secs => $1)
         ORDER BY started_at LIMIT $2",
    )
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A running job whose worker is gone goes back to pending, due now. `false` when it
/// moved on meanwhile.
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

/// Pending jobs due for longer than `older_than`.
pub async fn pending_due_since(
    pool: &PgPool,
    older_than: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, String)>> {
    sqlx::query_as(
        "SELECT id, repo_id, reason FROM sync_jobs
         WHERE state = 'pending' AND run_at < now() - make_interval(secs => $1)
         ORDER BY run_at LIMIT $2",
    )
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}
