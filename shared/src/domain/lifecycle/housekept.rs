//! Housekeeping's figures, written after the attempt's end. A mirror's status turns
//! `success` once its refs (and its LFS objects) are recorded; the serving indexes
//! (repack, multi-pack bitmap, commit-graph) are written afterwards, while the worker
//! still holds the repository's lease, and their figures land on the run the end
//! recorded. The end marked that run as one that did more than list
//! ([`RunStats::housekeeping_after`](super::attempt::RunStats)), so it is never folded
//! into an earlier run; the mirror's next check waits for the lease, so none is counted
//! in this run before these figures land.
//!
//! Fenced like every write about a sync: a worker that lost its lease writes nothing. A
//! worker that dies before this write leaves the run as a success without these
//! figures, as one whose pass failed; the pass itself stays owed in the mirror (see the
//! worker's housekeeping).

use sqlx::PgPool;

use super::attempt::Attempt;

/// What the pass did: the repack that succeeded (`geometric` or `full`) and its
/// milliseconds, and the mirror's objects on disk afterwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub housekeeping: Option<(&'static str, i32)>,
    pub size_bytes: Option<i64>,
}

/// Writes the pass's figures on the run `run_id` and the mirror's size on its row, in
/// one statement. `false`: the fence moved on, nothing written.
pub async fn record(
    pool: &PgPool,
    a: &Attempt<'_>,
    run_id: i64,
    figures: Figures,
) -> sqlx::Result<bool> {
    let (kind, ms) = figures.housekeeping.unzip();
    let written: i64 = sqlx::query_scalar(
        "WITH owned AS (
             SELECT id FROM repositories WHERE id = $1 AND sync_fence = $2 FOR UPDATE
         ), mirror AS (
             UPDATE repositories r SET size_bytes = COALESCE($5, r.size_bytes),
                 updated_at = now()
             FROM owned WHERE r.id = owned.id
         ), run AS (
             UPDATE sync_runs SET housekeeping = $3, housekeeping_ms = $4
             WHERE id = $6 AND repo_id = $1 AND EXISTS (SELECT 1 FROM owned)
         )
         SELECT count(*) FROM owned",
    )
    .bind(a.repo_id)
    .bind(a.fence)
    .bind(kind)
    .bind(ms)
    .bind(figures.size_bytes)
    .bind(run_id)
    .fetch_one(pool)
    .await?;
    Ok(written > 0)
}
