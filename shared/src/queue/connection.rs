//! Our connection to Redis, and keeping it usable across Redis restarts.
//!
//! Every command is bounded: a Redis that is down fails a command within
//! `redis.connection_timeout` (one connection attempt, no backoff series behind it), one
//! that hangs (a frozen process, a stuck failover) within `redis.response_timeout`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// Our own connection: apalis-redis's `connect()` times out responses after 500 ms.
pub async fn connect_redis(cfg: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(cfg.response_timeout))
        .set_connection_timeout(Some(cfg.connection_timeout))
        // Every command waiting for a reconnection waits for the whole series of
        // attempts: the default (6 with backoff) made a request to a stopped Redis wait
        // ~5 s per command. Whoever issues the next command (or [`keep_connected`]'s
        // ping) starts the next attempt.
        .set_number_of_retries(cfg.reconnect_attempts as usize)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, manager).await
}

/// How often [`keep_connected`] checks the connection.
const KEEP_CONNECTED_EVERY: Duration = Duration::from_secs(1);

/// Pings Redis every second for as long as it runs. The connection manager notices a
/// dropped connection (Redis restarted) only when a command fails on it: without this,
/// the first request needing Redis after a quiet restart would be that command.
pub async fn keep_connected(conn: ConnectionManager) {
    let mut ticks = tokio::time::interval(KEEP_CONNECTED_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let _ = ping(&conn, KEEP_CONNECTED_EVERY).await;
    }
}

/// One PING, answered within `within` or counted as failed.
pub async fn ping(conn: &ConnectionManager, within: Duration) -> bool {
    let mut conn = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    matches!(tokio::time::timeout(within, ping).await, Ok(Ok(_)))
}

/// Whether a failed Redis call is worth one more try at once: a dropped connection is
/// (the next command goes over a fresh one), a command that timed out is not (Redis is
/// hung; a second wait would only double the caller's).
pub trait Retryable {
    fn retryable(&self) -> bool;
}

impl Retryable for redis::RedisError {
    fn retryable(&self) -> bool {
        !self.is_timeout()
    }
}

impl Retryable for apalis_redis::Error {
    fn retryable(&self) -> bool {
        match self {
            apalis_redis::Error::Database(e) => e.retryable(),
            _ => true,
        }
    }
}

impl<E: Retryable> Retryable for apalis::prelude::TaskSinkError<E> {
    fn retryable(&self) -> bool {
        match self {
            apalis::prelude::TaskSinkError::PushError(e) => e.retryable(),
            _ => true,
        }
    }
}

/// Runs a Redis call again once if it fails on a dropped connection: the first command
/// on a connection that Redis dropped (a restart) fails and sets off the reconnection,
/// and the second goes over the new connection. A push that failed ambiguously may land
/// twice; a duplicate delivery is dropped by the worker.
pub async fn once_more<T, E, F, Fut>(mut call: F) -> std::result::Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    match call().await {
        Ok(done) => Ok(done),
        Err(e) if !e.retryable() => Err(e),
        Err(_) => call().await,
    }
}
