//! Connections for a command run by hand: short timeouts, and errors that say where.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use stasis_shared::config::{DatabaseConfig, RedisConfig};
use stasis_shared::db::pooler;
use stasis_shared::queue;

/// An operator at a prompt would rather hear "unreachable" in seconds than wait out
/// the services' longer timeouts, which suit a daemon riding out a restart.
const TIMEOUT: Duration = Duration::from_secs(5);

pub async fn postgres(cfg: &DatabaseConfig) -> anyhow::Result<PgPool> {
    // Host and port only: the URL may carry a password.
    let options = PgConnectOptions::from_str(&cfg.url).context("reading database.url")?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let context = || format!("connecting to Postgres at {target} (database.url)");
    // Plain connections first: the pool retries a refused connection until its timeout
    // and then reports only "timed out", hiding the cause. They also refuse a
    // transaction-mode pooler (`migrate` holds a session-level advisory lock).
    tokio::time::timeout(TIMEOUT, pooler::refuse_transaction_pooler(&options))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", TIMEOUT.as_secs()))
        .with_context(context)?
        .with_context(context)?;
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections.clamp(1, 4))
        .acquire_timeout(TIMEOUT)
        .connect_lazy_with(options))
}

pub async fn redis(cfg: &RedisConfig) -> anyhow::Result<ConnectionManager> {
    let client = queue::redis_client(cfg).context("reading redis.url and its TLS files")?;
    // Host and port only: the URL may carry a password.
    let target = client.get_connection_info().addr().to_string();
    let context = || format!("connecting to Redis at {target} (redis.url)");
    // As for Postgres: the connection manager retries, so the cause comes from a probe.
    tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", TIMEOUT.as_secs()))
        .with_context(context)?
        .with_context(context)?;
    let mut cfg = cfg.clone();
    cfg.connection_timeout = cfg.connection_timeout.min(TIMEOUT);
    cfg.response_timeout = cfg.response_timeout.min(TIMEOUT);
    tokio::time::timeout(TIMEOUT, queue::connect_redis(&cfg))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", TIMEOUT.as_secs()))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(context)
}
