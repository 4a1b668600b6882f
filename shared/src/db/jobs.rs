//! Reading jobs: the operator's views and the reaper's scans. Every change of a job's
//! state is in [`crate::lifecycle`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{JobState, SyncReason};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub repo_id: Uuid,
    /// `owner/name` of the repository.
    pub repo: String,
    pub reason: SyncReason,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub worker: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT j.id, j.repo_id, u.username || '/' || r.name AS repo, j.reason,
    j.state, j.attempts, j.max_attempts, j.last_error, j.run_at, j.worker, j.enqueued_at,
    j.started_at, j.finished_at
    FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id JOIN users u ON u.id = r.owner_id";

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
    let state = filter.state;
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
pub async fn depth(pool: &PgPool) -> sqlx::Result<(Vec<(JobState, i64)>, Option<f64>)> {
    let counts = sqlx::query_as("SELECT state, count(*) FROM sync_jobs GROUP BY state")
        .fetch_all(pool)
        .await?;
    let oldest: Option<f64> = sqlx::query_scalar(concat!(
        "SELECT EXTRACT(EPOCH FROM now() - min(enqueued_at))::float8 FROM sync_jobs j WHERE ",
        crate::job_pending!("j")
    ))
    .fetch_one(pool)
    .await?;
    Ok((counts, oldest))
}

/// Jobs marked running that started longer than `older_than` ago (id, repo, reason):
/// candidates for the reaper, which checks each one's repository lock before touching it.
pub async fn running_since(
    pool: &PgPool,
    older_than: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, SyncReason)>> {
    sqlx::query_as(concat!(
        "SELECT id, repo_id, reason FROM sync_jobs j WHERE ",
        crate::job_running!("j"),
        " AND started_at < now() - make_interval(secs => $1) ORDER BY started_at LIMIT $2"
    ))
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Pending jobs due for longer than `older_than`.
pub async fn pending_due_since(
    pool: &PgPool,
    older_than: std::time::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Uuid, SyncReason)>> {
    sqlx::query_as(concat!(
        "SELECT id, repo_id, reason FROM sync_jobs j WHERE ",
        crate::job_pending!("j"),
        " AND run_at < now() - make_interval(secs => $1) ORDER BY run_at LIMIT $2"
    ))
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}
