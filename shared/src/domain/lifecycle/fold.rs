//! Unchanged checks of a mirror fold into its latest run. Most syncs find the upstream
//! unchanged; a row for each would leave a mirror checked hourly with 24 rows a day that
//! say nothing happened. So an unchanged success that only listed is counted in the
//! mirror's latest run when that run succeeded (`checks`, `last_checked_at`,
//! `last_duration_ms`, `last_job_id`) instead of getting a row: the history reads "the
//! change at 10:02, then unchanged ×23, the last at 09:02 the next day", one row a
//! change. A run that changed something keeps its own figures (listing time, worker,
//! duration); a run that was itself an unchanged check that only listed takes the latest
//! check's listing time and worker, having no figures worth keeping. A failure or an
//! interruption writes a row of its own and is never folded into, so the next unchanged
//! check after it starts a run again; so does an unchanged check that did more than list
//! (LFS objects tried again, a housekeeping pass tried again), whose figures are its own.
//! The charts count every check where it happened from `unchanged_checks`.
//!
//! The fold is written in the attempt's end transaction, after the mirror's row was
//! locked under the attempt's fence: two ends of one mirror never fold at once, an
//! attempt that lost its lease never folds, and a crash leaves either the whole end or
//! none of it. A run `start` opened for the check (one that listed for long) is deleted
//! in the same statement, so a running attempt is its own row until its end.
//!
//! The fold's `UPDATE` touches no indexed column: with room on the row's page (the
//! table's fillfactor keeps some) Postgres rewrites the row in place, a HOT update that
//! writes no index entry.
//!
//! Every check is a job, done. The jobs of the checks in between are deleted as the row
//! takes the next one in. The run's first job (`job_id`) and its latest check's
//! (`last_job_id`) stay while the run is the mirror's latest, so whoever opened them
//! finds them done, and go once the mirror's next run of its own is written
//! ([`retire_earlier_jobs`]); the run keeps their ids and every figure. Kept, they would
//! pile up until `history.max_age`: a run and a job for every change, where the run alone
//! tells the story.

use sqlx::{Postgres, Transaction};

use super::attempt::Finish;

/// Rows of `unchanged_checks` per second: a busy second's increments spread over them.
pub const SHARDS: u8 = 8;

/// Records a successful unchanged check: counted in `unchanged_checks`, and, when it
/// only listed, folded into the mirror's latest run if that one succeeded (`open`, the
/// row `start` opened for this check, aside).
/// Answers the run it folded into, or `None`: the check needs a run of its own.
pub async fn unchanged_check(
    tx: &mut Transaction<'_, Postgres>,
    f: &Finish<'_>,
    open: Option<i64>,
) -> sqlx::Result<Option<i64>> {
    let a = &f.attempt;
    let s = &f.stats;
    let only_listed = s.lfs_objects.is_none()
        && s.lfs_error.is_none()
        && s.housekeeping.is_none()
        && !s.housekeeping_after;
    // The latest run is the history's first row (its order, its index); the one this
    // check opened is not a run before it. `superseded` is read from the snapshot: the
    // row's new version carries this check's job.
    sqlx::query_scalar(concat!(
        "WITH counted AS (
             INSERT INTO unchanged_checks AS c (second, shard, checks)
             VALUES (date_trunc('second', $3::timestamptz + make_interval(secs => $4)), $7, 1)
             ON CONFLICT (second, shard) DO UPDATE SET checks = c.checks + 1
         ), latest AS (
             SELECT id, last_job_id FROM sync_runs
             WHERE repo_id = $1 AND id IS DISTINCT FROM $6
             ORDER BY started_at DESC, id DESC LIMIT 1
         ), folded AS (
             UPDATE sync_runs r SET checks = r.checks + 1, last_checked_at = $3,
                 last_duration_ms = round($4 * 1000)::int, last_job_id = $2,
                 list_ms = CASE WHEN ",
        crate::run_only_listed!("r"),
        " THEN COALESCE($5, r.list_ms) ELSE r.list_ms END,
                 worker = CASE WHEN ",
        crate::run_only_listed!("r"),
        " THEN $9 ELSE r.worker END
             FROM latest
             WHERE r.id = latest.id AND $8 AND r.outcome = 'success'
             RETURNING r.id, latest.last_job_id AS superseded
         ), opened AS (
             DELETE FROM sync_runs WHERE id = $6 AND EXISTS (SELECT 1 FROM folded)
         ), superseded AS (
             DELETE FROM sync_jobs j USING folded
             WHERE j.id = folded.superseded AND ",
        crate::job_finished!("j"),
        " AND NOT EXISTS (SELECT 1 FROM sync_runs o WHERE o.job_id = j.id)
         )
         SELECT id FROM folded"
    ))
    .bind(a.repo_id)
    .bind(a.job_id)
    .bind(a.started_at)
    .bind(f.duration.as_secs_f64())
    .bind(f.stats.list_ms)
    .bind(open)
    .bind(i16::from(shard(a.repo_id)))
    .bind(only_listed)
    .bind(a.worker)
    .fetch_optional(&mut **tx)
    .await
}

/// The mirror's row of a second in `unchanged_checks`.
pub fn shard(repo_id: uuid::Uuid) -> u8 {
    repo_id.as_bytes()[15] % SHARDS
}

/// Deletes the jobs of the mirror's run before `run`, now that `run` (a run of its own:
/// a change, a failure, an interruption) follows it: the job of its latest check and its
/// own first job, each once done. Their attempts stay in that run's row; a job that
/// failed stays for the operator to retry or discard, and `job` (the one `run` records)
/// is never touched. A mirror so keeps the done jobs of its latest run alone (its first
/// and its latest check's), and a change costs its run alone.
pub async fn retire_earlier_jobs(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: uuid::Uuid,
    run: i64,
    job: uuid::Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM sync_jobs j USING (
             SELECT job_id, last_job_id FROM sync_runs
             WHERE repo_id = $1 AND id <> $2
             ORDER BY started_at DESC, id DESC LIMIT 1
         ) before
         WHERE j.id IN (before.job_id, before.last_job_id) AND j.id <> $3
           AND j.state = 'done'",
    )
    .bind(repo_id)
    .bind(run)
    .bind(job)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
