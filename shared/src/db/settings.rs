//! Run-time settings stored in Postgres, so that operators change them without a
//! restart and every process sees the change (the contract's interval at run time).

use std::time::Duration;

use sqlx::PgPool;

/// Overrides `mirror.sync_interval`, in seconds; read whenever a worker schedules a
/// mirror's next sync.
pub const SYNC_INTERVAL: &str = "mirror.sync_interval_secs";
/// `true` while an operator has paused scheduled syncs; read by the scheduler each tick.
pub const SCHEDULER_PAUSED: &str = "scheduler.paused";

async fn get(pool: &PgPool, key: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
}

async fn set(pool: &PgPool, key: &str, value: Option<&str>) -> sqlx::Result<()> {
    match value {
        Some(value) => sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        )
        .bind(key)
        .bind(value),
        None => sqlx::query("DELETE FROM settings WHERE key = $1").bind(key),
    }
    .execute(pool)
    .await?;
    Ok(())
}

/// The run-time override of the default sync interval, if one is set.
pub async fn sync_interval(pool: &PgPool) -> sqlx::Result<Option<Duration>> {
    Ok(get(pool, SYNC_INTERVAL)
        .await?
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs))
}

/// `None` removes the override: `mirror.sync_interval` from the config applies again.
pub async fn set_sync_interval(pool: &PgPool, interval: Option<Duration>) -> sqlx::Result<()> {
    let secs = interval.map(|d| d.as_secs().max(1).to_string());
    set(pool, SYNC_INTERVAL, secs.as_deref()).await
}

pub async fn scheduler_paused(pool: &PgPool) -> sqlx::Result<bool> {
    Ok(get(pool, SCHEDULER_PAUSED).await?.as_deref() == Some("true"))
}

pub async fn set_scheduler_paused(pool: &PgPool, paused: bool) -> sqlx::Result<()> {
    set(pool, SCHEDULER_PAUSED, paused.then_some("true")).await
}
