//! Reading jobs: the operator's views and the reaper's scans. Every change of a job's
//! state is in [`crate::domain::lifecycle`].

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

/// The jobs listing's columns and joins: a macro so that each statement is one literal.
macro_rules! job_rows {
    () => {
        "SELECT j.id, j.repo_id, u.username || '/' || r.name AS repo, j.reason,
    j.state, j.attempts, j.max_attempts, j.last_error, j.run_at, j.worker, j.enqueued_at,
    j.started_at, j.finished_at
    FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id JOIN users u ON u.id = r.owner_id"
    };
}

/// The listing and its count for one filter: `$1` state, `$2` owner, `$3` name, each
/// `NULL` when not filtered on. One text per combination, not `$1 IS NULL OR …`: a
/// pooled connection's prepared statement settles on a generic plan, and only a plain
/// `j.state = $1` lets that plan walk `sync_jobs_state` (the `OR` made `?state=failed`
/// read every job at 10 million). The `$n IS NULL` conditions only check, once, that
/// the unused parameters are unused. Without a repository filter a count reads the
/// jobs alone (every job has its repository): for one state, a range of
/// `sync_jobs_state`.
macro_rules! job_listing {
    ($filter:literal, $counted:literal) => {
        Listing {
            page: concat!(
                job_rows!(),
                $filter,
                " ORDER BY j.enqueued_at DESC, j.id DESC LIMIT $4 OFFSET $5"
            ),
            // counts no further than `$4`: a count of every job reads the whole table
            count: concat!(
                "SELECT count(*) FROM (SELECT 1 FROM ",
                $counted,
                $filter,
                " LIMIT $4) matching"
            ),
        }
    };
}

/// One page of the operator's job listing (`$4` rows from `$5` on) and the count of
/// its filter. Public so that `stasis-bench history` explains this text.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub page: &'static str,
    pub count: &'static str,
}

pub const ALL_JOBS: Listing = job_listing!(
    " WHERE $1::text IS NULL AND $2::text IS NULL AND $3::text IS NULL",
    "sync_jobs j"
);
pub const BY_STATE: Listing = job_listing!(
    " WHERE j.state = $1 AND $2::text IS NULL AND $3::text IS NULL",
    "sync_jobs j"
);
pub const BY_REPO: Listing = job_listing!(
    " WHERE $1::text IS NULL AND u.username = $2 AND r.name = $3",
    "sync_jobs j JOIN repositories r ON r.id = j.repo_id JOIN users u ON u.id = r.owner_id"
);
pub const BY_STATE_AND_REPO: Listing = job_listing!(
    " WHERE j.state = $1 AND u.username = $2 AND r.name = $3",
    "sync_jobs j JOIN repositories r ON r.id = j.repo_id JOIN users u ON u.id = r.owner_id"
);

impl JobFilter {
    pub fn listing(&self) -> Listing {
        match (self.state.is_some(), self.repo.is_some()) {
            (false, false) => ALL_JOBS,
            (true, false) => BY_STATE,
            (false, true) => BY_REPO,
            (true, true) => BY_STATE_AND_REPO,
        }
    }
}

/// Counted exactly up to here; beyond, "at least this many".
pub const COUNT_CAP: i64 = 10_000;

/// Jobs per state (`$1`, every state), each counted no further than `$2` (an index
/// range of `sync_jobs_state`); a state past it is Postgres's own estimate (table rows
/// times the state's frequency in `pg_stats`, as `ANALYZE` last saw them), so the queue
/// overview stays as fast at 10 million finished jobs as at a thousand.
pub const DEPTH: &str = "WITH counted AS (
        SELECT s.state, (SELECT count(*) FROM (
            SELECT 1 FROM sync_jobs j WHERE j.state = s.state LIMIT $2) c) AS n
        FROM unnest($1::text[]) AS s(state)
    ), estimated AS (
        SELECT v.state, v.freq * GREATEST(c.reltuples, 0) AS n
        FROM pg_stats p JOIN pg_class c ON c.oid = 'sync_jobs'::regclass,
             unnest(p.most_common_vals::text::text[], p.most_common_freqs) AS v(state, freq)
        WHERE p.schemaname = current_schema() AND p.tablename = 'sync_jobs'
          AND p.attname = 'state'
    )
    SELECT counted.state,
           CASE WHEN counted.n < $2 THEN counted.n
                ELSE GREATEST(counted.n, COALESCE(estimated.n, 0)::bigint) END,
           counted.n >= $2
    FROM counted LEFT JOIN estimated USING (state)";

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as::<_, Job>(concat!(job_rows!(), " WHERE j.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The state of each of these jobs that still exists.
pub async fn states(
    pool: &PgPool,
    ids: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, JobState>> {
    let rows: Vec<(Uuid, JobState)> =
        sqlx::query_as("SELECT id, state FROM sync_jobs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// What an operator filters the job list by; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    /// `(owner, name)`
    pub repo: Option<(String, String)>,
}

/// How many jobs match: exact, or at least `count` when counting stopped there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub count: i64,
    pub exact: bool,
}

/// One page of jobs, newest first, and how many match (exactly up to [`COUNT_CAP`], or
/// past the page asked for).
pub async fn list(
    pool: &PgPool,
    filter: &JobFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Job>, Total)> {
    let mut tx = super::snapshot(pool).await?;
    let state = filter.state;
    let (owner, name) = filter
        .repo
        .as_ref()
        .map(|(o, n)| (Some(o.as_str()), Some(n.as_str())))
        .unwrap_or_default();
    let listing = filter.listing();
    let jobs = sqlx::query_as::<_, Job>(listing.page)
        .bind(state)
        .bind(owner)
        .bind(name)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    let cap = COUNT_CAP.max(offset.saturating_add(limit));
    let counted: i64 = sqlx::query_scalar(listing.count)
        .bind(state)
        .bind(owner)
        .bind(name)
        .bind(cap.saturating_add(1))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let total = Total {
        count: counted.min(cap),
        exact: counted <= cap,
    };
    Ok((jobs, total))
}

/// Jobs in one state: exact, or an estimate past [`COUNT_CAP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct StateCount {
    pub state: JobState,
    pub count: i64,
    pub estimated: bool,
}

/// Jobs per state (see [`DEPTH`]), and the age in seconds of the oldest pending one.
pub async fn depth(pool: &PgPool) -> sqlx::Result<(Vec<StateCount>, Option<f64>)> {
    let counts = sqlx::query_as::<_, (JobState, i64, bool)>(DEPTH)
        .bind(JobState::ALL)
        .bind(COUNT_CAP)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(state, count, estimated)| StateCount {
            state,
            count,
            estimated,
        })
        .collect();
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
