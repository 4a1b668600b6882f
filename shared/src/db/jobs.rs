use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::SyncReason;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub repo_id: Uuid,
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

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as::<_, Job>("SELECT * FROM sync_jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Claims jobs for up to `limit` due mirrors in one statement, oldest due first.
/// Returns `(job_id, repo_id)` of the jobs created.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    max_attempts: i32,
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    sqlx::query_as(
        "WITH due AS (
            SELECT r.id FROM repositories r
            WHERE r.is_mirror AND r.mirror_enabled AND r.next_sync_at <= now()
              AND NOT EXISTS (SELECT 1 FROM sync_jobs j
                              WHERE j.repo_id = r.id AND j.state IN ('pending', 'running'))
            ORDER BY r.next_sync_at
            LIMIT $1
            FOR UPDATE OF r SKIP LOCKED
        ), jobs AS (
            INSERT INTO sync_jobs (id, repo_id, reason, max_attempts)
            SELECT gen_random_uuid(), id, 'scheduled', $2 FROM due
            ON CONFLICT DO NOTHING
            RETURNING id, repo_id
        ), queued AS (
            UPDATE repositories r SET sync_status = 'queued', updated_at = now()
            FROM jobs WHERE r.id = jobs.repo_id
        )
        SELECT id, repo_id FROM jobs",
    )
    .bind(limit)
    .bind(max_attempts)
    .fetch_all(pool)
    .await
}

/// Undoes `claim`/`claim_due` for jobs whose push to Redis failed, so no repository is
/// left `queued` behind a job nobody will run; due mirrors stay due for the next tick.
pub async fn unclaim(pool: &PgPool, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (
            DELETE FROM sync_jobs WHERE id = ANY($1) AND state = 'pending' AND attempts = 0
            RETURNING repo_id
        )
        UPDATE repositories r SET updated_at = now(), sync_status = CASE
            WHEN r.sync_error IS NOT NULL THEN 'failed'
            WHEN r.last_synced_at IS NULL THEN 'idle'
            ELSE 'success' END
        FROM gone WHERE r.id = gone.repo_id AND r.sync_status = 'queued'",
    )
    .bind(job_ids)
    .execute(pool)
    .await?;
    Ok(())
}
