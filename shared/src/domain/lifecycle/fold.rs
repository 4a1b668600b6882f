//! Consecutive unchanged checks of a mirror share one history row. Most syncs find the
//! upstream unchanged; a row for each would leave a mirror checked hourly with 24 rows a
//! day that say nothing happened. So an unchanged success whose mirror's latest run is
//! an unchanged success too is counted in that run (`checks`, `last_checked_at`,
//! `last_duration_ms`, `last_job_id`, the latest check's `list_ms` and `worker`) instead
//! of getting a row. A change, a failure or an interruption writes a row of its own, and
//! the next unchanged check starts a run again; so does an unchanged check that did more
//! than list (LFS objects tried again, a housekeeping pass tried again), whose figures
//! are its own, and no check folds into such a run. The charts count every check where
//! it happened from `unchanged_checks`.
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
//! Every check is a job, done. The job of the run's first check stays its `job_id`, the
//! latest check's is `last_job_id`, and the jobs of the checks in between are deleted as
//! the row takes the next one in: nobody waits on those any more (one job runs at a time
//! per mirror), and they would otherwise pile up until `history.max_age`.

use sqlx::{Postgres, Transaction};

use super::attempt::Finish;

/// Rows of `unchanged_checks` per second: a busy second's increments spread over them.
pub const SHARDS: u8 = 8;

/// Records a successful unchanged check: counted in `unchanged_checks`, and, when it
/// only listed, folded into the mirror's latest run if that is a successful unchanged
/// one that only listed too (`open`, the row `start` opened for this check, aside).
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
                 list_ms = COALESCE($5, r.list_ms), worker = $9
             FROM latest
             WHERE r.id = latest.id AND $8 AND r.outcome = 'success' AND r.unchanged
               AND r.lfs_objects IS NULL AND r.lfs_error IS NULL AND r.housekeeping IS NULL
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
