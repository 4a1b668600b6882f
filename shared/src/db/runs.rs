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

/// Attempts finished in one interval of an activity chart, by what became of them.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActivityBucket {
    /// The interval's start; it lasts `bucket_seconds`.
    pub start: DateTime<Utc>,
    /// Succeeded and moved refs.
    pub synced: i64,
    /// Succeeded with nothing to fetch.
    pub unchanged: i64,
    /// Failed, with attempts left (`retrying`).
    pub retrying: i64,
    /// Failed for good (`failed`).
    pub failed: i64,
    /// Ended otherwise: `abandoned`, `lost_lock` or `interrupted`.
    pub other: i64,
}

/// Attempts per interval by outcome: $1 the interval in seconds, $2 how many intervals,
/// $3 to $5 the outcomes `success`, `retrying` and `failed`. Reads only the index
/// `sync_runs_finished_outcome`, over the window's rows.
pub const ACTIVITY: &str = "WITH axis AS (
         SELECT generate_series(
             date_bin(make_interval(secs => $1), now(), 'epoch') - make_interval(secs => $1 * ($2 - 1)),
             date_bin(make_interval(secs => $1), now(), 'epoch'),
             make_interval(secs => $1)) AS start
     ), counted AS (
         SELECT date_bin(make_interval(secs => $1), finished_at, 'epoch') AS start,
                count(*) FILTER (WHERE outcome = $3 AND NOT unchanged) AS synced,
                count(*) FILTER (WHERE outcome = $3 AND unchanged) AS unchanged,
                count(*) FILTER (WHERE outcome = $4) AS retrying,
                count(*) FILTER (WHERE outcome = $5) AS failed,
                count(*) FILTER (WHERE outcome NOT IN ($3, $4, $5)) AS other
         FROM sync_runs
         WHERE finished_at >= (SELECT min(start) FROM axis)
         GROUP BY 1
     )
     SELECT a.start, coalesce(c.synced, 0) AS synced, coalesce(c.unchanged, 0) AS unchanged,
            coalesce(c.retrying, 0) AS retrying, coalesce(c.failed, 0) AS failed,
            coalesce(c.other, 0) AS other
     FROM axis a LEFT JOIN counted c USING (start) ORDER BY a.start";

/// `buckets` intervals of `bucket_seconds` each, oldest first, up to the one holding now;
/// empty intervals are listed with zeros so that a chart keeps its time axis.
pub async fn activity(
    pool: &PgPool,
    bucket_seconds: i64,
    buckets: i64,
) -> sqlx::Result<Vec<ActivityBucket>> {
    sqlx::query_as(ACTIVITY)
        .bind(bucket_seconds as f64)
        .bind(buckets)
        .bind(RunOutcome::Success)
        .bind(RunOutcome::Retrying)
        .bind(RunOutcome::Failed)
        .fetch_all(pool)
        .await
}
