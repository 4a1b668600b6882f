//! Bounded history: each mirror keeps its newest `history.max_runs_per_mirror` runs (its
//! last failed run among them, however old, since that is what its owner comes looking
//! for), and nothing older than `history.max_age`; a finished job still there goes in the
//! statement that deletes its last runs (a done job is mostly gone by then: it goes once
//! its mirror's next run is written), one that never had a run once older than
//! `history.max_age`, and notifications once delivered or given up and older than
//! `history.max_age`. The
//! mirror's own row (status, counters) is never touched.
//!
//! A run that stands for several unchanged checks (`checks`) is one row here, and as old
//! as its first check (`finished_at`, the index the age scan walks). The per-second
//! counts of unchanged checks go once older than [`CHECK_COUNTS_KEPT`].
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
/// How long `unchanged_checks` keeps a second's count: the longest activity chart is a
/// day, in whole half hours.
pub const CHECK_COUNTS_KEPT: Duration = Duration::from_secs(25 * 3600);
/// Mirrors whose excess runs one statement looks at.
pub const MIRRORS_PER_BATCH: i64 = 200;
/// Statements per table and pass: a pass stays short; the next one continues.
const MAX_BATCHES: usize = 20;

// The pass's statements, public so that `stasis-bench history` explains the very text
// that runs here.

/// The CTE body that deletes, beside a statement's `gone` runs (`id`, `job_id`,
/// `last_job_id`), the finished jobs those were the last runs of, and the job of the
/// latest unchanged check each folded run stood for: a job goes with its runs, so no
/// pass has to look for jobs without runs among all finished ones (an anti-join of both
/// whole tables, seconds at 10 million runs). A job a retry made pending again since the
/// statement began is left alone (its row is re-checked once the retry commits).
/// `OFFSET 0` keeps the `NOT EXISTS` a probe of `sync_runs_job` per deleted job: as an
/// anti-join the planner hashed all of `sync_runs` for it.
macro_rules! jobs_of_gone_runs {
    () => {
        concat!(
            "DELETE FROM sync_jobs j
         WHERE j.id IN (SELECT job_id FROM gone UNION ALL SELECT last_job_id FROM gone) AND ",
            stasis_shared::job_finished!("j"),
            " AND j.finished_at < now() - interval '1 minute'
           AND NOT EXISTS (SELECT 1 FROM sync_runs o
                           WHERE o.job_id = j.id AND o.id NOT IN (SELECT id FROM gone)
                           OFFSET 0)
         RETURNING j.id"
        )
    };
}

/// `$1` the last mirror id of the previous slice, `$2` `max_runs_per_mirror`, `$3`
/// mirrors per slice, `$4` rows per statement. Answers the runs and jobs deleted and
/// the slice's last mirror. `failed` and `cut` are computed once per mirror
/// (materialised: inlined, the last failed run was looked up again for every run), and
/// each mirror's victims are an index range below its cut (a `LATERAL` with a limit,
/// which the planner cannot turn into a hash join over all of `sync_runs`).
macro_rules! excess_runs {
    ($slice:literal) => {
        concat!(
            "WITH slice AS (",
            $slice,
            "), failed AS MATERIALIZED (
         SELECT s.id AS repo_id, (SELECT f.id FROM sync_runs f
             WHERE f.repo_id = s.id AND ",
            stasis_shared::run_failed!("f"),
            " ORDER BY f.id DESC LIMIT 1) AS keep
         FROM slice s
     ), cut AS MATERIALIZED (
         SELECT f.repo_id, f.keep, c.started_at, c.id
         FROM failed f CROSS JOIN LATERAL (
             SELECT r.started_at, r.id FROM sync_runs r
             WHERE r.repo_id = f.repo_id AND r.id IS DISTINCT FROM f.keep
             ORDER BY r.started_at DESC, r.id DESC
             OFFSET $2 - CASE WHEN f.keep IS NULL THEN 0 ELSE 1 END LIMIT 1
         ) c
     ), victims AS (
         SELECT v.id FROM cut CROSS JOIN LATERAL (
             SELECT r.id FROM sync_runs r
             WHERE r.repo_id = cut.repo_id
               AND (r.started_at, r.id) <= (cut.started_at, cut.id)
               AND r.id IS DISTINCT FROM cut.keep AND r.finished_at IS NOT NULL
             ORDER BY r.started_at DESC, r.id DESC
             LIMIT $4
         ) v
         LIMIT $4
     ), gone AS (
         DELETE FROM sync_runs WHERE id IN (SELECT id FROM victims)
         RETURNING id, job_id, last_job_id
     ), jobs_gone AS (",
            jobs_of_gone_runs!(),
            ")
     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM jobs_gone),
            (SELECT id FROM slice ORDER BY id DESC LIMIT 1)"
        )
    };
}

/// A slice of every mirror, in id order after `$1`.
pub const EXCESS_RUNS: &str =
    excess_runs!("SELECT id FROM repositories WHERE id > $1 ORDER BY id LIMIT $3");

/// The same for the mirrors in `$1` (an array): those with runs since the last pass.
pub const EXCESS_RUNS_OF: &str =
    excess_runs!("SELECT id FROM unnest($1::uuid[]) AS id ORDER BY id LIMIT $3");

/// `$1` the newest run the last pass had seen: the mirrors with a run since, which are
/// the only ones that can have gone past `max_runs` (a range of the primary key, as
/// long as the runs written since).
pub const MIRRORS_WITH_NEW_RUNS: &str =
    "SELECT DISTINCT repo_id FROM sync_runs WHERE id > $1 AND id <= $2";

/// `$1` `history.max_age` in seconds, `$2` rows per statement. Answers the runs and
/// jobs deleted.
pub const OLD_RUNS: &str = concat!(
    "WITH gone AS (
         DELETE FROM sync_runs WHERE id IN (
             SELECT r.id FROM sync_runs r
             WHERE r.finished_at IS NOT NULL
               AND r.finished_at < now() - make_interval(secs => $1)
               AND r.id IS DISTINCT FROM (SELECT f.id FROM sync_runs f
                   WHERE f.repo_id = r.repo_id AND ",
    stasis_shared::run_failed!("f"),
    " ORDER BY f.id DESC LIMIT 1)
             LIMIT $2)
         RETURNING id, job_id, last_job_id
     ), jobs_gone AS (",
    jobs_of_gone_runs!(),
    ")
     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM jobs_gone)"
);

/// Finished jobs without runs that the statements above did not take with theirs
/// (jobs that never had a run, such as a discarded one), once older than
/// `history.max_age`, so the scan is a range of `sync_jobs_finished`, not every
/// finished job. `$1` rows per statement, `$2` `history.max_age` in seconds.
pub const ORPHAN_JOBS: &str = concat!(
    "DELETE FROM sync_jobs WHERE id IN (
         SELECT j.id FROM sync_jobs j WHERE ",
    stasis_shared::job_finished!("j"),
    " AND j.finished_at < now() - interval '1 minute'
           AND j.finished_at < now() - make_interval(secs => $2)
           AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.job_id = j.id)
         LIMIT $1)"
);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    pub jobs: u64,
    pub notifications: u64,
    /// Rows of `unchanged_checks` (one second's count of one shard).
    pub unchanged_checks: u64,
}

/// What a leader's passes remember between them: the newest run the last complete pass
/// had seen, so the next one looks only at the mirrors written to since. A new leader
/// starts with none and looks at every mirror once (which also applies a lowered
/// `history.max_runs_per_mirror`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    seen_up_to: Option<i64>,
}

pub async fn enforce(
    cfg: &Config,
    pool: &PgPool,
    progress: &mut Progress,
) -> Result<Deleted, SchedulerError> {
    async {
        let max_runs = i64::from(cfg.history.max_runs_per_mirror);
        let max_age = cfg.history.max_age;
        let mut deleted = Deleted::default();
        let top: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM sync_runs")
            .fetch_one(pool)
            .await?;
        let (runs, jobs, complete) = match progress.seen_up_to {
            Some(seen) => excess_runs_since(pool, max_runs, seen, top).await?,
            None => excess_runs(pool, max_runs).await?,
        };
        // A pass cut short by its batch limits looks again next time. A run with an id
        // below `top` still uncommitted now is not looked at by the next pass; its
        // mirror's next run brings it back, excess and all.
        if complete {
            progress.seen_up_to = Some(top);
        }
        deleted.runs += runs;
        deleted.jobs += jobs;
        let (runs, jobs) = old_runs(pool, max_age).await?;
        deleted.runs += runs;
        deleted.jobs += jobs;
        deleted.jobs += repeat(|| orphan_jobs(pool, max_age)).await?;
        deleted.notifications += repeat(|| old_notifications(pool, max_age)).await?;
        deleted.unchanged_checks += repeat(|| old_check_counts(pool)).await?;
        for (table, n) in [
            ("sync_runs", deleted.runs),
            ("sync_jobs", deleted.jobs),
            ("notifications", deleted.notifications),
            ("unchanged_checks", deleted.unchanged_checks),
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
async fn excess_runs(pool: &PgPool, max_runs: i64) -> Result<(u64, u64, bool), SchedulerError> {
    let mut after = uuid::Uuid::nil();
    let (mut runs, mut jobs) = (0, 0);
    for _ in 0..MAX_BATCHES * 10 {
        let (deleted, jobs_deleted, last): (i64, i64, Option<uuid::Uuid>) =
            sqlx::query_as(EXCESS_RUNS)
                .bind(after)
                .bind(max_runs)
                .bind(MIRRORS_PER_BATCH)
                .bind(BATCH)
                .fetch_one(pool)
                .await?;
        runs += deleted as u64;
        jobs += jobs_deleted as u64;
        match last {
            // a full batch may have left more in this slice: look at it again
            Some(_) if deleted >= BATCH => {}
            Some(last) => after = last,
            None => return Ok((runs, jobs, true)),
        }
    }
    Ok((runs, jobs, false))
}

/// [`excess_runs`] for the mirrors with a run newer than `seen` (up to `top`).
async fn excess_runs_since(
    pool: &PgPool,
    max_runs: i64,
    seen: i64,
    top: i64,
) -> Result<(u64, u64, bool), SchedulerError> {
    let mirrors: Vec<uuid::Uuid> = sqlx::query_scalar(MIRRORS_WITH_NEW_RUNS)
        .bind(seen)
        .bind(top)
        .fetch_all(pool)
        .await?;
    let (mut runs, mut jobs, mut complete) = (0, 0, true);
    for slice in mirrors.chunks(MIRRORS_PER_BATCH as usize) {
        let (r, j, all) = batches(|| async move {
            let (runs, jobs, _): (i64, i64, Option<uuid::Uuid>) = sqlx::query_as(EXCESS_RUNS_OF)
                .bind(slice)
                .bind(max_runs)
                .bind(MIRRORS_PER_BATCH)
                .bind(BATCH)
                .fetch_one(pool)
                .await?;
            Ok((runs, jobs))
        })
        .await?;
        runs += r;
        jobs += j;
        complete &= all;
    }
    Ok((runs, jobs, complete))
}

/// Runs older than `max_age` (each mirror's last failed run kept), with the jobs they
/// were the last runs of, a batch per statement.
async fn old_runs(pool: &PgPool, max_age: Duration) -> Result<(u64, u64), SchedulerError> {
    let (runs, jobs, _) = batches(|| {
        sqlx::query_as(OLD_RUNS)
            .bind(max_age.as_secs_f64())
            .bind(BATCH)
            .fetch_one(pool)
    })
    .await?;
    Ok((runs, jobs))
}

/// Runs a deleting statement (answering the runs and jobs it deleted) again while it
/// deletes a full batch, at most `MAX_BATCHES` times; `false` when it stopped there.
async fn batches<F, Fut>(mut statement: F) -> Result<(u64, u64, bool), SchedulerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<(i64, i64)>>,
{
    let (mut runs, mut jobs) = (0, 0);
    for _ in 0..MAX_BATCHES {
        let (deleted, jobs_deleted) = statement().await?;
        runs += deleted as u64;
        jobs += jobs_deleted as u64;
        if deleted < BATCH {
            return Ok((runs, jobs, true));
        }
    }
    Ok((runs, jobs, false))
}

async fn orphan_jobs(pool: &PgPool, max_age: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(ORPHAN_JOBS)
        .bind(BATCH)
        .bind(max_age.as_secs_f64())
        .execute(pool)
        .await?;
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

async fn old_check_counts(pool: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM unchanged_checks WHERE (second, shard) IN (
             SELECT second, shard FROM unchanged_checks
             WHERE second < now() - make_interval(secs => $1)
             LIMIT $2)",
    )
    .bind(CHECK_COUNTS_KEPT.as_secs_f64())
    .bind(BATCH)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
