//! What keeps one client from exhausting the API: per-client rate limits (governor's
//! keyed token buckets), a cap on requests in flight, a deadline per request, and a
//! body size limit. Applied to every route except the health probes, which must keep
//! answering while the API is saturated.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use stasis_shared::config::{ApiConfig, RateLimitConfig};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Read,
    Write,
    Import,
}

impl Budget {
    fn of(req: &Request) -> Self {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            Budget::Read
        } else if req.uri().path() == "/api/v1/repos/import" {
            Budget::Import
        } else {
            Budget::Write
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Budget::Read => "read",
            Budget::Write => "write",
            Budget::Import => "import",
        }
    }
}

/// Whom a budget belongs to: the token (hashed, so the limiter's map holds no
/// credentials), else the peer address; a router called without a listener (tests)
/// shares one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Token([u8; 32]),
    Addr(IpAddr),
    Unknown,
}

impl Client {
    fn of(req: &Request) -> Self {
        if let Some(token) = req.headers().get(AUTHORIZATION) {
            return Client::Token(Sha256::digest(token.as_bytes()).into());
        }
        match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => Client::Addr(addr.ip()),
            None => Client::Unknown,
        }
    }
}

/// Checks between sweeps of idle clients out of the limiters' maps.
const SWEEP_EVERY: u64 = 4096;

pub struct Guard {
    limits: Option<[DefaultKeyedRateLimiter<Client>; 3]>,
    checks: AtomicU64,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    max_body: u64,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nz(per_second)).allow_burst(nz(burst))
}

/// Described and zeroed here, next to what counts them, so dashboards see a series
/// before the first refusal.
fn describe() {
    use metrics::{counter, describe_counter};
    describe_counter!(
        "stasis_api_rate_limited_total",
        "Requests refused with 429, by budget (read, write, import)"
    );
    describe_counter!(
        "stasis_api_coalesced_syncs_total",
        "Manual and webhook sync requests that started no sync now: pending (an existing job answered) or deferred (a new job waits for min_manual_interval)"
    );
    describe_counter!(
        "stasis_api_timeouts_total",
        "Requests answered 504 after api.request_timeout"
    );
    describe_counter!(
        "stasis_api_overloaded_total",
        "Requests shed with 503 at api.max_concurrent_requests"
    );
    for budget in [Budget::Read, Budget::Write, Budget::Import] {
        counter!("stasis_api_rate_limited_total", "budget" => budget.as_str()).absolute(0);
    }
    for reason in ["pending", "deferred"] {
        counter!("stasis_api_coalesced_syncs_total", "reason" => reason).absolute(0);
    }
    counter!("stasis_api_timeouts_total").absolute(0);
    counter!("stasis_api_overloaded_total").absolute(0);
}

impl Guard {
    pub fn new(api: &ApiConfig, rl: &RateLimitConfig) -> Arc<Self> {
        describe();
        let limits = rl.enabled.then(|| {
            [
                RateLimiter::keyed(quota(rl.read_per_second, rl.read_burst)),
                RateLimiter::keyed(quota(rl.write_per_second, rl.write_burst)),
                RateLimiter::keyed(quota(rl.import_per_second, rl.import_burst)),
            ]
        });
        Arc::new(Self {
            limits,
            checks: AtomicU64::new(0),
            in_flight: Arc::new(Semaphore::new(api.max_concurrent_requests)),
            timeout: api.request_timeout,
            max_body: api.max_body_size.as_u64(),
        })
    }

    /// Seconds until the client may try again, when over its budget.
    fn throttled(&self, budget: Budget, client: &Client) -> Option<u64> {
        let limits = self.limits.as_ref()?;
        let limiter = &limits[budget as usize];
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in limits {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        let not_until = limiter.check_key(client).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // rounded up: a client that waits what it is told is never refused again
        Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }
}

pub async fn guard(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let budget = Budget::of(&req);
    if let Some(secs) = guard.throttled(budget, &Client::of(&req)) {
        crate::refusals::rate_limited(budget);
        let mut response = ApiError::RateLimited(secs).into_response();
        response.headers_mut().insert(RETRY_AFTER, secs.into());
        return response;
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > guard.max_body) {
        return ApiError::TooLarge.into_response();
    }
    // Shed at once when full: a queue of waiting requests only adds latency to every
    // one of them, and a client retrying after 503 costs less than one holding a socket.
    let Ok(_permit) = guard.in_flight.clone().try_acquire_owned() else {
        crate::refusals::overloaded();
        return ApiError::Overloaded.into_response();
    };
    match tokio::time::timeout(guard.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            crate::refusals::timed_out();
            ApiError::Timeout.into_response()
        }
    }
}
