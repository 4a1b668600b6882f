//! `sync_runs`: one row per attempt, the history operators and owners read, except that
//! the unchanged checks after a successful run are counted in its row (`checks`; written
//! by `domain::lifecycle::fold`). `unchanged_checks` counts those checks per second for the
//! charts.

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
    /// The worker that ran it; for a run of several unchanged checks that only listed,
    /// the latest's.
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
    /// Milliseconds spent listing upstream's refs (by the latest check, for a run of
    /// several unchanged checks that only listed), and fetching and updating them.
    pub list_ms: Option<i32>,
    pub fetch_ms: Option<i32>,
    /// Upstream's refs matched the mirror's, so nothing was fetched.
    pub unchanged: bool,
    /// The checks this run stands for: 1, or for a successful run, 1 plus the unchanged
    /// checks that followed it (each one a sync that found nothing new; the next
    /// change, failure or interruption starts a run of its own). `unchanged` says
    /// whether the run's first check found nothing new too.
    pub checks: i32,
    /// When the latest of those checks began: `started_at` for a run of one check.
    /// `started_at` and `finished_at` are the first check's.
    pub last_checked_at: DateTime<Utc>,
    /// How long the run's first check took, from its start to its end; for a run of
    /// unchanged checks that only listed, the latest's (`None` while the attempt runs).
    pub duration_ms: Option<i64>,
    /// Git LFS objects downloaded after the fetch, and their bytes (`None`: no LFS step).
    pub lfs_objects: Option<i32>,
    pub lfs_bytes: Option<i64>,
    /// Why LFS objects are missing after this run; the git part succeeded regardless.
    pub lfs_error: Option<String>,
}

const SELECT: &str = concat!(
    "SELECT id, job_id, attempt, worker, started_at, finished_at, outcome,
    error, error_kind, refs_updated, refs_created, refs_pruned, bytes_received,
    objects_received, list_ms, fetch_ms, unchanged, checks,
    COALESCE(last_checked_at, started_at) AS last_checked_at,
    CASE WHEN ",
    crate::run_only_listed!("sync_runs"),
    " THEN COALESCE(last_duration_ms::bigint,
                    (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint)
         ELSE (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint
    END AS duration_ms,
    lfs_objects, lfs_bytes, lfs_error
    FROM sync_runs"
);

/// Every attempt of a job, first to last. The job of an unchanged check that folded
/// into an earlier run has that run, while it is the run's latest check: the run is the
/// mirror's newest one begun before the job (one probe of `sync_runs_repo_newest`).
pub async fn for_job(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Vec<Run>> {
    sqlx::query_as::<_, Run>(&format!(
        "{SELECT} WHERE job_id = $1
            OR id = (SELECT f.id FROM sync_jobs j CROSS JOIN LATERAL (
                         SELECT f.id, f.last_job_id FROM sync_runs f
                         WHERE f.repo_id = j.repo_id AND f.started_at <= j.started_at
                         ORDER BY f.started_at DESC, f.id DESC LIMIT 1) f
                     WHERE j.id = $1 AND f.last_job_id = $1)
         ORDER BY id"
    ))
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

/// Attempts finished within the last minute and the last hour: every unchanged check
/// (counted per second in `unchanged_checks`, since a run may stand for many), and
/// every other attempt's run.
pub async fn throughput(pool: &PgPool) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "WITH runs AS (
             SELECT count(*) FILTER (WHERE finished_at > now() - interval '1 minute') AS minute,
                    count(*) AS hour
             FROM sync_runs WHERE finished_at > now() - interval '1 hour'
               AND (outcome IS DISTINCT FROM $1 OR NOT unchanged)
         ), checks AS (
             SELECT coalesce(sum(checks) FILTER (WHERE second > now() - interval '1 minute'), 0)
                        AS minute,
                    coalesce(sum(checks), 0) AS hour
             FROM unchanged_checks WHERE second > now() - interval '1 hour'
         )
         SELECT (runs.minute + checks.minute)::bigint, (runs.hour + checks.hour)::bigint
         FROM runs, checks",
    )
    .bind(RunOutcome::Success)
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
    /// Checks that found nothing to fetch (every one, however many a run stands for).
    pub unchanged: i64,
    /// Failed, with attempts left (`retrying`).
    pub retrying: i64,
    /// Failed for good (`failed`).
    pub failed: i64,
    /// Ended otherwise: `abandoned`, `lost_lock` or `interrupted`.
    pub other: i64,
}

/// Attempts per interval by outcome: $1 the interval in seconds, $2 how many intervals,
/// $3 to $5 the outcomes `success`, `retrying` and `failed`. Reads the index
/// `sync_runs_finished_outcome` over the window's runs, and the window's seconds of
/// `unchanged_checks` for the unchanged checks: a run that stands for several was
/// finished by its first, and its others belong where they happened.
pub const ACTIVITY: &str = "WITH axis AS (
         SELECT generate_series(
             date_bin(make_interval(secs => $1), now(), 'epoch') - make_interval(secs => $1 * ($2 - 1)),
             date_bin(make_interval(secs => $1), now(), 'epoch'),
             make_interval(secs => $1)) AS start
     ), counted AS (
         SELECT date_bin(make_interval(secs => $1), finished_at, 'epoch') AS start,
                count(*) FILTER (WHERE outcome = $3 AND NOT unchanged) AS synced,
                count(*) FILTER (WHERE outcome = $4) AS retrying,
                count(*) FILTER (WHERE outcome = $5) AS failed,
                count(*) FILTER (WHERE outcome NOT IN ($3, $4, $5)) AS other
         FROM sync_runs
         WHERE finished_at >= (SELECT min(start) FROM axis)
         GROUP BY 1
     ), checked AS (
         SELECT date_bin(make_interval(secs => $1), second, 'epoch') AS start,
                sum(checks) AS unchanged
         FROM unchanged_checks
         WHERE second >= (SELECT min(start) FROM axis)
         GROUP BY 1
     )
     SELECT a.start, coalesce(c.synced, 0) AS synced,
            coalesce(k.unchanged, 0)::bigint AS unchanged,
            coalesce(c.retrying, 0) AS retrying, coalesce(c.failed, 0) AS failed,
            coalesce(c.other, 0) AS other
     FROM axis a LEFT JOIN counted c USING (start) LEFT JOIN checked k USING (start)
     ORDER BY a.start";

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
