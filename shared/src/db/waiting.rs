//! Pending jobs and their place in a lane: a pending job is either in its Redis lane
//! (`in_queue`) or waits here, in Postgres, for room in the lane or for its `run_at`
//! (see the `admission` migration). Claiming a job for a lane is one conditional UPDATE,
//! so of the processes that race to deliver it exactly one pushes it.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Lane, SyncMirror, SyncReason};

/// Whether the mirror `r`'s jobs go to storage `$2`.
macro_rules! routed_to {
    () => {
        "COALESCE(r.move_to, r.storage) = $2::text"
    };
}
/// Claims the pending, due jobs among `ids` that no lane holds yet: the caller pushes
/// what this returns, and gives back with [`unclaim`] what it could not push.
pub async fn claim(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<SyncMirror>> {
    let rows: Vec<(Uuid, Uuid, SyncReason)> = sqlx::query_as(concat!(
        "UPDATE sync_jobs j SET in_queue = true, delivery_epoch = current_redis_epoch()
         WHERE j.id = ANY($1) AND NOT j.in_queue AND j.run_at <= now() AND ",
        crate::job_pending!("j"),
        " RETURNING j.id, j.repo_id, j.reason"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(delivery).collect())
}

/// Claims up to `limit` due waiting jobs of `lane`, of mirrors whose jobs go to
/// `storage` (`None`: the only storage, so every job). The scheduled lane takes them
/// oldest due first (one index range); the priority lane takes turns across owners, each
/// owner's oldest first, so that one owner's thousand imports do not stand in front of
/// another owner's single "Sync now".
pub async fn claim_due(
    pool: &PgPool,
    storage: Option<&str>,
    lane: Lane,
    limit: i64,
) -> sqlx::Result<Vec<SyncMirror>> {
    let statement = match (lane, storage) {
        (Lane::Scheduled, None) => CLAIM_SCHEDULED.to_owned(),
        (Lane::Scheduled, Some(_)) => CLAIM_SCHEDULED.replace(
            "FROM sync_jobs j WHERE",
            concat!(
                "FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id WHERE ",
                routed_to!(),
                " AND"
            ),
        ),
        (Lane::Priority, None) => CLAIM_FAIRLY.to_owned(),
        (Lane::Priority, Some(_)) => CLAIM_FAIRLY.replace(
            "WHERE j.state = 'pending'",
            concat!("WHERE ", routed_to!(), " AND j.state = 'pending'"),
        ),
    };
    let mut query = sqlx::query_as::<_, (Uuid, Uuid, SyncReason)>(&statement).bind(limit);
    if let Some(storage) = storage {
        query = query.bind(storage);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.into_iter().map(delivery).collect())
}

const CLAIM_SCHEDULED: &str = "WITH chosen AS (
        SELECT j.id FROM sync_jobs j WHERE
            j.state = 'pending' AND NOT j.in_queue AND j.run_at <= now()
            AND j.reason IN ('scheduled', 'move')
        ORDER BY j.run_at, j.id LIMIT $1
        FOR UPDATE OF j SKIP LOCKED
    )
    UPDATE sync_jobs j SET in_queue = true, delivery_epoch = current_redis_epoch()
    FROM chosen WHERE j.id = chosen.id
    RETURNING j.id, j.repo_id, j.reason";

const CLAIM_FAIRLY: &str = "WITH waiting AS (
        SELECT j.id, j.run_at,
               row_number() OVER (PARTITION BY r.owner_id ORDER BY j.run_at, j.id) AS turn
        FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
        WHERE j.state = 'pending' AND NOT j.in_queue AND j.run_at <= now()
          AND j.reason NOT IN ('scheduled', 'move')
    ), chosen AS (
        SELECT id FROM waiting ORDER BY turn, run_at, id LIMIT $1
    )
    UPDATE sync_jobs j SET in_queue = true, delivery_epoch = current_redis_epoch()
    FROM chosen
    WHERE j.id = chosen.id AND j.state = 'pending' AND NOT j.in_queue
    RETURNING j.id, j.repo_id, j.reason";

/// The lanes, by storage, that have due jobs waiting for room: one look at the few rows
/// the `sync_jobs_awaiting_queue` index holds, so an idle dispatcher pass costs one
/// query however many storages there are.
pub async fn due_lanes(pool: &PgPool) -> sqlx::Result<Vec<(String, Lane)>> {
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT DISTINCT COALESCE(r.move_to, r.storage), j.reason IN ('scheduled', 'move')
         FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
         WHERE j.state = 'pending' AND NOT j.in_queue AND j.run_at <= now()",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(storage, scheduled)| {
            let lane = if scheduled {
                Lane::Scheduled
            } else {
                Lane::Priority
            };
            (storage, lane)
        })
        .collect())
}

/// Gives back jobs whose push failed: they wait for the dispatcher's next pass.
pub async fn unclaim(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "UPDATE sync_jobs j SET in_queue = false WHERE j.id = ANY($1) AND ",
        crate::job_pending!("j")
    ))
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// A delivery that cannot run now (its repository locked, its host at its cap, its
/// job not due yet) ends; its pending job waits in Postgres until `delay` has passed,
/// and the dispatcher then delivers it afresh. `false` when the job was not pending (it
/// runs elsewhere, or finished): nothing to deliver again.
pub async fn postpone(pool: &PgPool, job_id: Uuid, delay: Duration) -> sqlx::Result<bool> {
    let done = sqlx::query(concat!(
        "UPDATE sync_jobs j SET in_queue = false,
             run_at = GREATEST(j.run_at, now() + make_interval(secs => $2))
         WHERE j.id = $1 AND ",
        crate::job_pending!("j")
    ))
    .bind(job_id)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pending jobs that wait in Postgres for their lane.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Waiting {
    /// Due now, waiting for room in their lane.
    pub due: i64,
    /// Waiting for their time (retry backoff, a postponed delivery, a deferred "Sync now").
    pub later: i64,
}

pub async fn count(pool: &PgPool) -> sqlx::Result<Waiting> {
    let (due, later): (i64, i64) = sqlx::query_as(concat!(
        "SELECT count(*) FILTER (WHERE j.run_at <= now()),
                count(*) FILTER (WHERE j.run_at > now())
         FROM sync_jobs j WHERE NOT j.in_queue AND ",
        crate::job_pending!("j")
    ))
    .fetch_one(pool)
    .await?;
    Ok(Waiting { due, later })
}

/// Pending jobs recorded as in their lane, due for longer than `age`: if Redis holds no
/// delivery of theirs (a process died between claiming and pushing), they wait again.
pub async fn in_queue_since(pool: &PgPool, age: Duration, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(concat!(
        "SELECT j.id FROM sync_jobs j WHERE j.in_queue
           AND j.run_at < now() - make_interval(secs => $1) AND ",
        crate::job_pending!("j"),
        " ORDER BY j.run_at LIMIT $2"
    ))
    .bind(age.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

fn delivery((job_id, repo_id, reason): (Uuid, Uuid, SyncReason)) -> SyncMirror {
    SyncMirror {
        job_id,
        repo_id,
        reason,
    }
}
