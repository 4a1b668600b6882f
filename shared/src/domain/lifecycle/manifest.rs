//! Due mirrors that an upstream's manifest may vouch for, and their next sync moved on
//! without a job when it does (the scheduler's manifest round, `stasis-scheduler`'s
//! `manifest` module). Only a mirror listed within `mirror.manifest_max_skip`, with a
//! fingerprint and no ref selection (its fingerprint covers every ref), is a candidate.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::settings;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub id: Uuid,
    pub mirror_url: String,
    pub refs_fingerprint: String,
}

/// Due mirrors without an active job whose own listing is recent enough to skip one.
pub async fn candidates(pool: &PgPool, max_skip: Duration) -> sqlx::Result<Vec<Candidate>> {
    sqlx::query_as(
        "SELECT r.id, r.mirror_url, r.refs_fingerprint FROM repositories r
         WHERE r.is_mirror AND r.mirror_enabled AND r.next_sync_at <= now()
           AND r.refs_fingerprint IS NOT NULL AND r.mirror_url IS NOT NULL
           AND r.last_synced_at > now() - make_interval(secs => $1)
           AND r.include_refs = '{}' AND r.exclude_refs = '{}'
           AND NOT EXISTS (SELECT 1 FROM sync_jobs j
                           WHERE j.repo_id = r.id AND j.state IN ('pending', 'running'))",
    )
    .bind(max_skip.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Moves the next sync of mirrors the manifest found unchanged one interval on (their
/// base, stretched as unchanged syncs stretch it, ±10 % jitter), as an unchanged sync
/// would, without touching `last_synced_at`: that stays the last real listing. Returns
/// how many moved (a mirror synced meanwhile is not due any more and stays as it is).
pub async fn postpone(
    pool: &PgPool,
    ids: &[Uuid],
    default_interval: Duration,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE repositories r SET updated_at = now(),
             next_sync_at = now() + make_interval(secs =>
                 COALESCE(r.sync_interval_secs::double precision,
                          (SELECT value::double precision FROM settings WHERE key = $2), $3)
                 * r.interval_factor * (0.9 + random() * 0.2))
         WHERE r.id = ANY($1) AND r.next_sync_at <= now()",
    )
    .bind(ids)
    .bind(settings::SYNC_INTERVAL)
    .bind(default_interval.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
