//! A job comes into being (`pending`, its repository `queued`): waiting in Postgres for
//! admission to its lane, or, for the scheduler's waves, claimed for it at once (and
//! withdrawn if that push fails).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::SyncReason;

/// The repository's job after [`open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Created by this call: its delivery is the caller's to push.
    New(Uuid),
    /// The pending or running job the repository already had.
    Existing(Uuid),
}

impl Opened {
    pub fn job_id(self) -> Uuid {
        match self {
            Opened::New(id) | Opened::Existing(id) => id,
        }
    }
}

/// Inserts a pending job unless the repository already has one pending or running
/// (the partial unique index decides, so concurrent callers cannot both win). `None`:
/// no such repository.
pub async fn open(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: Uuid,
    reason: SyncReason,
    max_attempts: i32,
) -> sqlx::Result<Option<Opened>> {
    // Lock the repository row first: it serialises creating jobs for one repository and
    // keeps the row (and its status) stable until commit.
    let exists: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM repositories WHERE id = $1 FOR UPDATE")
            .bind(repo_id)
            .fetch_optional(&mut **tx)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    if let Some(existing) = active_job(&mut **tx, repo_id).await? {
        return Ok(Some(Opened::Existing(existing)));
    }
    // time-ordered, as the scheduler's (`time_ordered_uuid()` in SQL): a new key goes on
    // the last page of the job indexes keyed by it
    let job_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, max_attempts) VALUES ($1, $2, $3, $4)",
    )
    .bind(job_id)
    .bind(repo_id)
    .bind(reason)
    .bind(max_attempts)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE repositories SET sync_status = 'queued', updated_at = now() WHERE id = $1")
        .bind(repo_id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(Opened::New(job_id)))
}

/// The repository's pending or running job.
pub async fn active_job<'e, E>(executor: E, repo_id: Uuid) -> sqlx::Result<Option<Uuid>>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query_scalar(concat!(
        "SELECT id FROM sync_jobs j WHERE repo_id = $1 AND ",
        crate::job_active!("j")
    ))
    .bind(repo_id)
    .fetch_optional(executor)
    .await
}

/// Where a scheduler tick's batches have reached, in `(next_sync_at, id)` order.
pub type DueCursor = (DateTime<Utc>, Uuid);

/// Jobs a batch opened, `(job_id, repo_id)`, and where the tick's next batch starts.
#[derive(Debug, Default)]
pub struct DueBatch {
    pub jobs: Vec<(Uuid, Uuid)>,
    pub reached: Option<DueCursor>,
}

/// Opens `scheduled` jobs for up to `limit` due mirrors in one statement, oldest due
/// first, after `after` when an earlier batch of the same tick stopped there. A mirror
/// skipped because another transaction held its row is due again for the next tick,
/// which starts over.
pub async fn open_due(
    pool: &PgPool,
    limit: i64,
    max_attempts: i32,
    after: Option<DueCursor>,
) -> sqlx::Result<DueBatch> {
    let rows: Vec<(Uuid, Uuid, DateTime<Utc>, Uuid)> = sqlx::query_as(OPEN_DUE)
        .bind(limit)
        .bind(max_attempts)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .fetch_all(pool)
        .await?;
    Ok(DueBatch {
        reached: rows.first().map(|&(_, _, at, id)| (at, id)),
        jobs: rows
            .into_iter()
            .map(|(job, repo, _, _)| (job, repo))
            .collect(),
    })
}

/// [`open_due`]'s statement: `$1` batch size, `$2` `sync.max_attempts`, `$3`/`$4` where
/// the tick's previous batch stopped. Public so that `stasis-bench history` explains
/// this text.
pub const OPEN_DUE: &str = "WITH due AS (
            SELECT r.id, r.next_sync_at FROM repositories r
            WHERE r.is_mirror AND r.mirror_enabled AND r.next_sync_at <= now()
              AND (r.next_sync_at, r.id) > (COALESCE($3, '-infinity'::timestamptz),
                                            COALESCE($4, '00000000-0000-0000-0000-000000000000'::uuid))
              AND NOT EXISTS (SELECT 1 FROM sync_jobs j
                              WHERE j.repo_id = r.id AND j.state IN ('pending', 'running'))
            ORDER BY r.next_sync_at, r.id
            LIMIT $1
            FOR UPDATE OF r SKIP LOCKED
        ), jobs AS (
            -- claimed for the lane as they are opened: the tick took room for them
            INSERT INTO sync_jobs (id, repo_id, reason, max_attempts, in_queue)
            SELECT time_ordered_uuid(), id, 'scheduled', $2, true FROM due
            ON CONFLICT DO NOTHING
            RETURNING id, repo_id
        ), queued AS (
            -- by primary key: joined to `jobs`, the planner hashed the whole table for
            -- every batch (about 140 ms per 5,000 of 100,000 mirrors)
            UPDATE repositories r SET sync_status = 'queued', updated_at = now()
            WHERE r.id = ANY (ARRAY(SELECT repo_id FROM jobs))
        ), reached AS (
            SELECT next_sync_at, id FROM due ORDER BY next_sync_at DESC, id DESC LIMIT 1
        )
        -- uncorrelated, so evaluated once: a join of `jobs` to `due` was planned as a
        -- nested loop over both (both estimated at one row)
        SELECT id, repo_id, (SELECT next_sync_at FROM reached), (SELECT id FROM reached)
        FROM jobs";

/// Undoes [`open_due`] for jobs whose push to Redis failed, so no repository is left
/// `queued` behind a job nobody will run; due mirrors stay due for the next tick.
pub async fn withdraw(pool: &PgPool, job_ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "WITH gone AS (
            DELETE FROM sync_jobs WHERE id = ANY($1) AND state = 'pending' AND attempts = 0
            RETURNING repo_id
        )
        UPDATE repositories r SET updated_at = now(), sync_status = ",
        super::settled!(),
        " FROM gone WHERE r.id = gone.repo_id AND r.sync_status = 'queued'"
    ))
    .bind(job_ids)
    .execute(pool)
    .await?;
    Ok(())
}
