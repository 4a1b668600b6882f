//! Our connection to Redis, and keeping it usable across Redis restarts.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// Our own connection: apalis-redis's `connect()` times out responses after 500 ms.
pub async fn connect_redis(cfg: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(cfg.response_timeout))
        .set_connection_timeout(Some(cfg.connection_timeout))
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, manager).await
}

/// How often [`keep_connected`] checks the connection.
const KEEP_CONNECTED_EVERY: Duration = Duration::from_secs(1);

/// Pings Redis every second for as long as it runs. The connection manager notices a
/// dropped connection (Redis restarted) only when a command fails on it: without this,
/// the first request needing Redis after a quiet restart would be that command.
pub async fn keep_connected(conn: ConnectionManager) {
    let mut ticks = tokio::time::interval(KEEP_CONNECTED_EVERY);
    loop {
        ticks.tick().await;
        let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn.clone()).await;
    }
}

/// Runs a Redis call again once if it fails: the first command on a connection that
/// Redis dropped (a restart) fails and sets off the reconnection, and the second goes
/// over the new connection. A push that failed ambiguously may land twice; a duplicate
/// delivery is dropped by the worker.
pub async fn once_more<T, E, F, Fut>(mut call: F) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    match call().await {
        Ok(done) => Ok(done),
        Err(_) => call().await,
    }
}
