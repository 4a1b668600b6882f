//! Freshness, what users of a mirror feel: how many mirrors are overdue, past their
//! next sync by more than one interval (their own, else the default), and by how long
//! the worst one is. A backlog, a paused scheduler, a stuck lane or no workers all show
//! up here, whatever their cause.

use std::time::Duration;

use sqlx::PgPool;

/// Mirrors overdue and the seconds the most overdue one is past its next sync (0 for
/// none). One range scan of the due index: every interval is at least
/// `min_interval`, so no overdue mirror lies beyond that bound; each one found is then
/// held to its own interval.
pub async fn overdue(
    pool: &PgPool,
    default_interval: Duration,
    min_interval: Duration,
) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(next_sync_at))::float8, 0)
         FROM repositories
         WHERE is_mirror AND mirror_enabled
           AND next_sync_at < now() - make_interval(secs => $1)
           AND next_sync_at < now() - make_interval(secs => COALESCE(sync_interval_secs::float8, $2))",
    )
    .bind(min_interval.as_secs_f64())
    .bind(default_interval.as_secs_f64())
    .fetch_one(pool)
    .await
}
