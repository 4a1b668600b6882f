//! Connections for a command run by hand: short timeouts, and errors that say where.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use stasis_shared::config::{DatabaseConfig, RedisConfig};
use stasis_shared::queue;

/// An operator at a prompt would rather hear "unreachable" in seconds than wait out
/// the services' longer timeouts, which suit a daemon riding out a restart.
const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn postgres(cfg: &DatabaseConfig) -> anyhow::Result<PgPool> {
    // Host and port only: the URL may carry a password.
    let options = PgConnectOptions::from_str(&cfg.url).context("reading database.url")?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    PgPoolOptions::new()
        .max_connections(cfg.max_connections.clamp(1, 4))
        .acquire_timeout(TIMEOUT)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to Postgres at {target} (database.url)"))
}

pub async fn redis(cfg: &RedisConfig) -> anyhow::Result<ConnectionManager> {
    let target = redis::Client::open(cfg.url.as_str())
        .map(|c| c.get_connection_info().addr().to_string())
        .unwrap_or_else(|_| "an unreadable redis.url".into());
    let mut cfg = cfg.clone();
    cfg.connection_timeout = cfg.connection_timeout.min(TIMEOUT);
    cfg.response_timeout = cfg.response_timeout.min(TIMEOUT);
    tokio::time::timeout(TIMEOUT, queue::connect_redis(&cfg))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", TIMEOUT.as_secs()))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to Redis at {target} (redis.url)"))
}
