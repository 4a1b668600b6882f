//! The Git LFS objects a mirror should hold and does not (`lfs_missing`): written by the
//! worker after each LFS step, retried with backoff by later syncs, made due at once by
//! an operator, counted in the mirror's status and the fleet's gauge.
//!
//! `repositories.lfs_retry_at` follows the earliest `next_try_at` of a mirror's rows,
//! updated in the same transaction, so a delivery's read of the mirror says whether a
//! retry is due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// An object still missing after a step, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillMissing {
    pub oid: String,
    pub size: u64,
    pub error: String,
}

/// How long failed objects wait before the next try: `base × 2^(attempts − 1)`, at most
/// `max` (the system's one backoff, without jitter: a mirror's objects are asked for in
/// one batch, and syncs of different mirrors are spread already).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

/// The mirror's remembered objects due for a try (oid, size), at most `limit`, those
/// due longest first.
pub async fn due(pool: &PgPool, repo_id: Uuid, limit: i64) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT oid, size FROM lfs_missing WHERE repo_id = $1 AND next_try_at <= now()
         ORDER BY next_try_at LIMIT $2",
    )
    .bind(repo_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Records the outcome of a step: `arrived` objects are forgotten, `still_missing` ones
/// remembered (a new one from now, a known one with one more attempt and a longer
/// wait). A mirror whose LFS was turned off meanwhile (or that is gone) keeps nothing.
pub async fn record(
    pool: &PgPool,
    repo_id: Uuid,
    arrived: &[String],
    still_missing: &[StillMissing],
    backoff: Backoff,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    // locks the mirror's row: a concurrent PATCH turning LFS off (which forgets the rows
    // in its own transaction) goes first or waits, so none are written after it
    let enabled: Option<bool> =
        sqlx::query_scalar("SELECT lfs_enabled FROM repositories WHERE id = $1 FOR UPDATE")
            .bind(repo_id)
            .fetch_optional(&mut *tx)
            .await?;
    match enabled {
        None => return tx.commit().await,
        Some(false) => {
            forget_in(&mut tx, repo_id).await?;
            return tx.commit().await;
        }
        Some(true) => {}
    }
    if !arrived.is_empty() {
        sqlx::query("DELETE FROM lfs_missing WHERE repo_id = $1 AND oid = ANY($2)")
            .bind(repo_id)
            .bind(arrived)
            .execute(&mut *tx)
            .await?;
    }
    if !still_missing.is_empty() {
        let oids: Vec<&str> = still_missing.iter().map(|m| m.oid.as_str()).collect();
        let known: Vec<(String, i32)> = sqlx::query_as(
            "SELECT oid, attempts FROM lfs_missing WHERE repo_id = $1 AND oid = ANY($2)",
        )
        .bind(repo_id)
        .bind(&oids)
        .fetch_all(&mut *tx)
        .await?;
        let known: std::collections::HashMap<String, i32> = known.into_iter().collect();
        let waits: Vec<f64> = still_missing
            .iter()
            .map(|m| {
                let attempts = known.get(&m.oid).copied().unwrap_or(0).max(0) as u32 + 1;
                crate::domain::backoff::delay(backoff.base, backoff.max, attempts, false)
                    .as_secs_f64()
            })
            .collect();
        let sizes: Vec<i64> = still_missing.iter().map(|m| m.size as i64).collect();
        let errors: Vec<String> = still_missing
            .iter()
            .map(|m| m.error.chars().take(1000).collect())
            .collect();
        sqlx::query(
            "INSERT INTO lfs_missing (repo_id, oid, size, next_try_at, last_error)
             SELECT $1, u.oid, u.size, now() + make_interval(secs => u.wait), u.error
             FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::text[])
                 AS u(oid, size, wait, error)
             ON CONFLICT (repo_id, oid) DO UPDATE SET
                 attempts = lfs_missing.attempts + 1, size = EXCLUDED.size,
                 next_try_at = EXCLUDED.next_try_at, last_error = EXCLUDED.last_error",
        )
        .bind(repo_id)
        .bind(&oids)
        .bind(&sizes)
        .bind(&waits)
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
    }
    follow(&mut tx, repo_id).await?;
    tx.commit().await
}

/// Forgets the mirror's remembered objects (its LFS was turned off).
pub async fn forget(pool: &PgPool, repo_id: Uuid) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    forget_in(&mut tx, repo_id).await?;
    tx.commit().await
}

pub(crate) async fn forget_in(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM lfs_missing WHERE repo_id = $1")
        .bind(repo_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE repositories SET lfs_retry_at = NULL WHERE id = $1 AND lfs_retry_at IS NOT NULL",
    )
    .bind(repo_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An operator's request: every remembered object of the mirror is due now. How many
/// there are.
pub async fn retry_now(pool: &PgPool, repo_id: Uuid) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("UPDATE lfs_missing SET next_try_at = now() WHERE repo_id = $1")
        .bind(repo_id)
        .execute(&mut *tx)
        .await?;
    follow(&mut tx, repo_id).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// The mirror's remembered objects and when the next is due.
pub async fn count(pool: &PgPool, repo_id: Uuid) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as("SELECT count(*), min(next_try_at) FROM lfs_missing WHERE repo_id = $1")
        .bind(repo_id)
        .fetch_one(pool)
        .await
}

/// All mirrors' remembered objects: the fleet's gauge.
pub async fn total(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM lfs_missing")
        .fetch_one(pool)
        .await
}

/// `repositories.lfs_retry_at` to the earliest of the mirror's rows, written only when it
/// changes (the row is the hottest in the system).
async fn follow(tx: &mut Transaction<'_, Postgres>, repo_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE repositories r SET lfs_retry_at = m.at
         FROM (SELECT min(next_try_at) AS at FROM lfs_missing WHERE repo_id = $1) m
         WHERE r.id = $1 AND r.lfs_retry_at IS DISTINCT FROM m.at",
    )
    .bind(repo_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
