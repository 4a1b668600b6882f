//! The HTTP API (`api.*`) and its per-client budgets (`ratelimit.*`).

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// A request still unanswered after this gets a 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A request still unanswered after this while Postgres or Redis fails this
    /// process's health check gets a 503 naming it (a backend that hangs).
    #[serde(with = "humantime_serde")]
    pub unavailable_after: Duration,
    /// A client that has not sent its whole request head by then is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Requests handled at once; past it, 503 at once rather than an unbounded queue.
    pub max_concurrent_requests: usize,
    /// Largest request body any route accepts.
    pub max_body_size: ByteSize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            unavailable_after: Duration::from_millis(1200),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            max_body_size: ByteSize::mib(2),
        }
    }
}

/// Per-client request budgets (token bucket: `*_per_second` refill, `*_burst` size),
/// keyed by bearer token when one is sent, else by peer address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub read_per_second: u32,
    pub read_burst: u32,
    pub write_per_second: u32,
    pub write_burst: u32,
    pub import_per_second: u32,
    pub import_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            read_per_second: 100,
            read_burst: 400,
            write_per_second: 20,
            write_burst: 100,
            import_per_second: 2,
            import_burst: 50,
        }
    }
}
