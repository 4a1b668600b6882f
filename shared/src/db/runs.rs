//! `sync_runs`: one row per attempt, the history operators and owners read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{ErrorKind, RunOutcome};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Run {
    pub id: i64,
    pub job_id: Uuid,
    pub attempt: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` while the attempt runs.
    pub outcome: Option<RunOutcome>,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    /// Refs created or moved (`refs_created` of them new).
    pub refs_updated: i32,
    pub refs_created: i32,
    /// Refs deleted because upstream deleted them.
    pub refs_pruned: i32,
    pub bytes_received: i64,
    pub objects_received: i32,
    /// Milliseconds spent listing upstream's refs, and fetching and updating them.
    pub list_ms: Option<i32>,
    pub fetch_ms: Option<i32>,
    /// Upstream's refs matched the mirror's, so nothing was fetched.
    pub unchanged: bool,
    pub duration_ms: Option<i64>,
    /// Git LFS objects downloaded after the fetch, and their bytes (`None`: no LFS step).
    pub lfs_objects: Option<i32>,
    pub lfs_bytes: Option<i64>,
    /// Why LFS objects are missing after this run; the git part succeeded regardless.
    pub lfs_error: Option<String>,
}

const SELECT: &str = "SELECT id, job_id, attempt, worker, started_at, finished_at, outcome,
    error, error_kind, refs_updated, refs_created, refs_pruned, bytes_received,
    objects_received, list_ms, fetch_ms, unchanged,
    (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint AS duration_ms,
    lfs_objects, lfs_bytes, lfs_error
    FROM sync_runs";

/// Every attempt of a job, first to last.
pub async fn for_job(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Vec<Run>> {
    sqlx::query_as::<_, Run>(&format!("{SELECT} WHERE job_id = $1 ORDER BY id"))
        .bind(job_id)
        .fetch_all(pool)
        .await
}

/// The repository's latest `limit` attempts, newest first.
pub async fn for_repo(pool: &PgPool, repo_id: Uuid, limit: i64) -> sqlx::Result<Vec<Run>> {
    sqlx::query_as::<_, Run>(&format!(
        "{SELECT} WHERE repo_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
    ))
    .bind(repo_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Attempts finished within the last minute and the last hour.
pub async fn throughput(pool: &PgPool) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE finished_at > now() - interval '1 minute'),
                count(*)
         FROM sync_runs WHERE finished_at > now() - interval '1 hour'",
    )
    .fetch_one(pool)
    .await
}
