//! Our connection to Redis, and keeping it usable across Redis restarts.
//!
//! Every command is bounded: a Redis that is down fails a command within
//! `redis.connection_timeout` (one connection attempt, no backoff series behind it), one
//! that hangs (a frozen process, a stuck failover) within `redis.response_timeout`.
//!
//! `rediss://` connects over TLS and checks the server's certificate and name against
//! the system's trust store, or against `redis.ca_file`.

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, ErrorKind, RedisError, TlsCertificates};

use crate::config::RedisConfig;

/// The client for `redis.url`, with `redis.ca_file` and the client certificate when
/// they are set.
pub fn client(cfg: &RedisConfig) -> redis::RedisResult<redis::Client> {
    // redis's rustls connections take the process's default provider; rustls only
    // picks one by itself while a single one is compiled in. Already installed: fine.
    // ring, as sqlx's TLS uses (rustls deprecates it for lacking post-quantum key
    // exchange; aws-lc-rs, which has it, needs a C toolchain and cmake to build).
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client_tls = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert, "redis.client_cert_file")?,
            client_key: read_pem(key, "redis.client_key_file")?,
        }),
        _ => {
            return Err(invalid(
                "redis.client_cert_file and redis.client_key_file go together",
                "set both or neither".into(),
            ))
        }
    };
    if cfg.ca_file.is_none() && client_tls.is_none() {
        return redis::Client::open(cfg.url.as_str());
    }
    if !cfg.url.starts_with("rediss://") {
        return Err(invalid(
            "redis.ca_file and redis.client_cert_file need TLS",
            "redis.url must start with rediss://".into(),
        ));
    }
    let root_cert = match &cfg.ca_file {
        Some(path) => Some(read_pem(path, "redis.ca_file")?),
        None => None,
    };
    let certificates = TlsCertificates {
        client_tls,
        root_cert,
    };
    redis::Client::build_with_tls(cfg.url.as_str(), certificates)
}

fn read_pem(path: &Path, key: &'static str) -> redis::RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(key, format!("reading {}: {e}", path.display())))
}

fn invalid(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// Our own connection: apalis-redis's `connect()` times out responses after 500 ms.
pub async fn connect_redis(cfg: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = client(cfg)?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(cfg.response_timeout))
        .set_connection_timeout(Some(cfg.connection_timeout))
        // Every command waiting for a reconnection waits for the whole series of
        // attempts: the default (6 with backoff) made a request to a stopped Redis wait
        // ~5 s per command. Whoever issues the next command (the API's health check
        // pings several times a second, workers poll) starts the next attempt.
        .set_number_of_retries(cfg.reconnect_attempts as usize)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, manager).await
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn calls_after_failing_with(kind: io::ErrorKind) -> u32 {
        let calls = AtomicU32::new(0);
        let result: redis::RedisResult<()> = once_more(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err(io::Error::new(kind, "failed").into()) }
        })
        .await;
        assert!(result.is_err());
        calls.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_dropped_connection_is_tried_again_a_timeout_is_not() {
        assert_eq!(calls_after_failing_with(io::ErrorKind::BrokenPipe).await, 2);
        assert_eq!(
            calls_after_failing_with(io::ErrorKind::ConnectionRefused).await,
            2
        );
        // a hung Redis: a second wait would double the caller's
        assert_eq!(calls_after_failing_with(io::ErrorKind::TimedOut).await, 1);
    }

    #[tokio::test]
    async fn a_push_that_timed_out_is_not_pushed_again() {
        let timed_out: redis::RedisError = io::Error::new(io::ErrorKind::TimedOut, "t").into();
        let push =
            apalis::prelude::TaskSinkError::PushError(apalis_redis::Error::Database(timed_out));
        assert!(!push.retryable());
        let dropped: redis::RedisError = io::Error::new(io::ErrorKind::ConnectionReset, "r").into();
        let push =
            apalis::prelude::TaskSinkError::PushError(apalis_redis::Error::Database(dropped));
        assert!(push.retryable());
    }
}
