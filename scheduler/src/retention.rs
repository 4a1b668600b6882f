//! Bounded history: each mirror keeps its newest `history.max_runs_per_mirror` runs (its
//! last failed run among them, however old, since that is what its owner comes looking
//! for), and nothing older than `history.max_age`; finished jobs go once no run refers
//! to them (a run's job FK cascades, so a job is never deleted under its runs), and
//! notifications once delivered or given up and older than `history.max_age`. The
//! mirror's own row (status, counters) is never touched.
//!
//! Deletes go in small batches, each its own statement: no long lock on tables the
//! workers write to at every sync end.

use std::time::Duration;

use sqlx::PgPool;
use stasis_shared::Config;
use tracing::{debug, info_span, Instrument};

use crate::error::SchedulerError;

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;
/// Mirrors whose excess runs one statement looks at.
pub const MIRRORS_PER_BATCH: i64 = 200;
/// Statements per table and pass: a pass stays short; the next one continues.
const MAX_BATCHES: usize = 20;

// The pass's statements, public so that `stasis-bench history` explains the very text
// that runs here.

/// `$1` the last mirror id of the previous slice, `$2` `max_runs_per_mirror`, `$3`
/// mirrors per slice, `$4` rows per statement.
pub const EXCESS_RUNS: &str = "WITH slice AS (
         SELECT id FROM repositories WHERE id > $1 ORDER BY id LIMIT $3
     ), failed AS (
         SELECT s.id AS repo_id, (SELECT f.id FROM sync_runs f
             WHERE f.repo_id = s.id AND f.outcome = 'failed'
             ORDER BY f.id DESC LIMIT 1) AS keep
         FROM slice s
     ), cut AS (
         SELECT f.repo_id, f.keep, c.started_at, c.id
         FROM failed f CROSS JOIN LATERAL (
             SELECT r.started_at, r.id FROM sync_runs r
             WHERE r.repo_id = f.repo_id AND r.id IS DISTINCT FROM f.keep
             ORDER BY r.started_at DESC, r.id DESC
             OFFSET $2 - CASE WHEN f.keep IS NULL THEN 0 ELSE 1 END LIMIT 1
         ) c
     ), victims AS (
         SELECT r.id FROM cut JOIN sync_runs r ON r.repo_id = cut.repo_id
         WHERE (r.started_at, r.id) <= (cut.started_at, cut.id)
           AND r.id IS DISTINCT FROM cut.keep AND r.finished_at IS NOT NULL
         LIMIT $4
     ), gone AS (
         DELETE FROM sync_runs WHERE id IN (SELECT id FROM victims) RETURNING id
     )
     SELECT (SELECT count(*) FROM gone), (SELECT id FROM slice ORDER BY id DESC LIMIT 1)";

/// `$1` `history.max_age` in seconds, `$2` rows per statement.
pub const OLD_RUNS: &str = "DELETE FROM sync_runs WHERE id IN (
         SELECT r.id FROM sync_runs r
         WHERE r.finished_at IS NOT NULL
           AND r.finished_at < now() - make_interval(secs => $1)
           AND r.id IS DISTINCT FROM (SELECT f.id FROM sync_runs f
               WHERE f.repo_id = r.repo_id AND f.outcome = 'failed'
               ORDER BY f.id DESC LIMIT 1)
         LIMIT $2)";

/// `$1` rows per statement.
pub const ORPHAN_JOBS: &str = "DELETE FROM sync_jobs WHERE id IN (
         SELECT j.id FROM sync_jobs j
         WHERE j.state IN ('done', 'failed', 'dead')
           AND j.finished_at < now() - interval '1 minute'
           AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.job_id = j.id)
         LIMIT $1)";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    pub jobs: u64,
    pub notifications: u64,
}

pub async fn enforce(cfg: &Config, pool: &PgPool) -> Result<Deleted, SchedulerError> {
    async {
        let max_runs = i64::from(cfg.history.max_runs_per_mirror);
        let max_age = cfg.history.max_age;
        let mut deleted = Deleted::default();
        deleted.runs += excess_runs(pool, max_runs).await?;
        deleted.runs += repeat(|| old_runs(pool, max_age)).await?;
        deleted.jobs += repeat(|| orphan_jobs(pool)).await?;
        deleted.notifications += repeat(|| old_notifications(pool, max_age)).await?;
        for (table, n) in [
            ("sync_runs", deleted.runs),
            ("sync_jobs", deleted.jobs),
            ("notifications", deleted.notifications),
        ] {
            metrics::counter!("stasis_history_deleted_total", "table" => table).increment(n);
        }
        debug!(?deleted, "history retention pass");
        Ok(deleted)
    }
    .instrument(info_span!("retention"))
    .await
}

async fn repeat<F, Fut>(mut batch: F) -> Result<u64, SchedulerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<u64>>,
{
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let n = batch().await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Runs beyond each mirror's newest `max_runs`, mirrors taken in id order a slice at a
/// time (the window reads at most `max_runs` index entries per mirror). Its last failed
/// run counts among the kept ones, so a mirror never keeps more than `max_runs`.
async fn excess_runs(pool: &PgPool, max_runs: i64) -> Result<u64, SchedulerError> {
    let mut after = uuid::Uuid::nil();
    let mut total = 0;
    for _ in 0..MAX_BATCHES * 10 {
        let (deleted, last): (i64, Option<uuid::Uuid>) = sqlx::query_as(EXCESS_RUNS)
            .bind(after)
            .bind(max_runs)
            .bind(MIRRORS_PER_BATCH)
            .bind(BATCH)
            .fetch_one(pool)
            .await?;
        total += deleted as u64;
        match last {
            // a full batch may have left more in this slice: look at it again
            Some(_) if deleted >= BATCH => {}
            Some(last) => after = last,
            None => break,
        }
    }
    Ok(total)
}

async fn old_runs(pool: &PgPool, max_age: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(OLD_RUNS)
        .bind(max_age.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Finished jobs no run refers to any more: their runs were pruned (or they never had
/// one). Younger than a minute they are left alone, in case a retry is about to be
/// recorded against them.
async fn orphan_jobs(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(ORPHAN_JOBS).bind(BATCH).execute(pool).await?;
    Ok(done.rows_affected())
}

async fn old_notifications(pool: &PgPool, max_age: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM notifications WHERE id IN (
             SELECT id FROM notifications
             WHERE COALESCE(delivered_at, given_up_at) < now() - make_interval(secs => $1)
             LIMIT $2)",
    )
    .bind(max_age.as_secs_f64())
    .bind(BATCH)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
