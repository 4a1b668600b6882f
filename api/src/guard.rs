//! What keeps one client from exhausting the API: per-client rate limits (governor's
//! keyed token buckets), a cap on requests in flight, a deadline per request, and a
//! body size limit. Applied to every route except the health probes, which must keep
//! answering while the API is saturated.
//!
//! A budget follows who the caller is (docs/limits.md): a valid token spends its
//! user's, however the header was spelled; no token, a malformed one or one the
//! database does not know spends the address's, charged before the lookup, so once it
//! is spent made-up tokens cost no database work; webhook deliveries spend their
//! mirror's from that address. The token is read and looked up here, once, and the
//! handlers' extractors take the user from the request (`auth::Identity`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_LENGTH, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use stasis_shared::config::{ApiConfig, RateLimitConfig};
use stasis_shared::db::users;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::auth::Identity;
use crate::credential::Credential;
use crate::error::ApiError;
use crate::recent::Recent;

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

/// Whom a budget belongs to: users by id, mirrors by their path's hash, so the
/// limiter's maps hold no credentials; a router called without a listener (tests) has
/// no address and shares one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    /// A user, once the database knew their token.
    User(Uuid),
    /// The peer address: no token, a malformed one, or one not yet known to be valid.
    Addr(Option<IpAddr>),
    /// Webhook deliveries to one mirror (its path, hashed) from one address.
    Hook([u8; 32], Option<IpAddr>),
}

fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The mirror a webhook delivery is for (`owner/repo` as the path spells it), if the
/// request is one.
fn hook_target(req: &Request) -> Option<[u8; 32]> {
    if req.method() != Method::POST {
        return None;
    }
    let target = req.uri().path().strip_prefix(HOOKS)?;
    Some(Sha256::digest(target.as_bytes()).into())
}

const HOOKS: &str = "/api/v1/hooks/";

/// Who the request claims to be, before the database is asked.
enum Claim {
    /// No token, or one that cannot be valid: the address's budget.
    Anonymous(Credential),
    /// A token; `Some` user when it was valid lately, whose budget it spends before
    /// the lookup confirms it. `None`: the address's budget, until the lookup tells.
    Token {
        token: String,
        hash: [u8; 32],
        proven: Option<Uuid>,
    },
    /// A webhook delivery: its mirror's budget from this address, and the address's
    /// too when that mirror has not received a verified delivery lately.
    Hook { target: [u8; 32], proven: bool },
}

/// Checks between sweeps of idle clients out of the limiters' maps.
const SWEEP_EVERY: u64 = 4096;

pub struct Guard {
    limits: Option<[DefaultKeyedRateLimiter<Client>; 3]>,
    checks: AtomicU64,
    /// Token hashes the database knew lately, with their user.
    tokens: Recent<Uuid>,
    /// Webhook targets that received a verified delivery lately.
    hooks: Recent<()>,
    pool: PgPool,
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
    pub fn new(api: &ApiConfig, rl: &RateLimitConfig, pool: PgPool) -> Arc<Self> {
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
            tokens: Recent::new(),
            hooks: Recent::new(),
            pool,
            in_flight: Arc::new(Semaphore::new(api.max_concurrent_requests)),
            timeout: api.request_timeout,
            max_body: api.max_body_size.as_u64(),
        })
    }

    /// Spends one request of `client`'s budget; when over it, the seconds until the
    /// client may try again.
    fn throttled(&self, budget: Budget, client: &Client) -> Option<u64> {
        let limits = self.limits.as_ref()?;
        let limiter = &limits[budget as usize];
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in limits {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            self.tokens.sweep();
            self.hooks.sweep();
        }
        let not_until = limiter.check_key(client).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // rounded up: a client that waits what it is told is never refused again
        Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }

    fn claim(&self, req: &Request) -> Claim {
        if let Some(target) = hook_target(req) {
            // the mirror's secret authenticates a delivery; a header a forge adds
            // (Gitea's "Authorization Header" option) is not this API's token
            let proven = self.hooks.get(&target).is_some();
            return Claim::Hook { target, proven };
        }
        match Credential::from_headers(req.headers()) {
            Credential::Bearer(token) => {
                let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                let proven = self.tokens.get(&hash);
                Claim::Token {
                    token,
                    hash,
                    proven,
                }
            }
            other => Claim::Anonymous(other),
        }
    }

    /// What is charged before anything reaches the database, so that a request that
    /// proves nothing costs its address's budget and no lookup once that is spent.
    fn before_lookup(&self, budget: Budget, claim: &Claim, addr: Option<IpAddr>) -> Option<u64> {
        match claim {
            Claim::Anonymous(_) | Claim::Token { proven: None, .. } => {
                self.throttled(budget, &Client::Addr(addr))
            }
            Claim::Token {
                proven: Some(user), ..
            } => self.throttled(budget, &Client::User(*user)),
            Claim::Hook { target, proven } => {
                if !proven {
                    if let Some(secs) = self.throttled(budget, &Client::Addr(addr)) {
                        return Some(secs);
                    }
                }
                self.throttled(budget, &Client::Hook(*target, addr))
            }
        }
    }

    /// Looks the token up once, for authentication and for whose budget it spends:
    /// the `Identity` the handlers' extractors read, or the refusal.
    async fn identify(
        &self,
        budget: Budget,
        claim: Claim,
        addr: Option<IpAddr>,
    ) -> Result<Identity, Response> {
        let (token, hash, proven) = match claim {
            Claim::Anonymous(Credential::Malformed) => return Ok(Identity::Invalid),
            Claim::Anonymous(_) | Claim::Hook { .. } => return Ok(Identity::Anonymous),
            Claim::Token {
                token,
                hash,
                proven,
            } => (token, hash, proven),
        };
        let user = users::find_by_token(&self.pool, &token)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        match (user, proven) {
            (Some(user), Some(id)) if user.id == id => {
                // its budget was spent before the lookup; this keeps it known
                self.tokens.prove(hash, user.id);
                Ok(Identity::User(user))
            }
            (Some(user), _) => {
                self.tokens.prove(hash, user.id);
                match self.throttled(budget, &Client::User(user.id)) {
                    Some(secs) => Err(rate_limited(budget, secs)),
                    None => Ok(Identity::User(user)),
                }
            }
            (None, None) => Ok(Identity::Invalid),
            // revoked since it was proven: its address pays, as for any unknown token
            (None, Some(_)) => {
                self.tokens.forget(&hash);
                match self.throttled(budget, &Client::Addr(addr)) {
                    Some(secs) => Err(rate_limited(budget, secs)),
                    None => Ok(Identity::Invalid),
                }
            }
        }
    }

    /// A delivery's answer says whether its target proved genuine: a verified one
    /// spares the address's budget from then on; a refused one (no such mirror, a
    /// wrong signature) is charged to the address like any request that proves nothing.
    fn delivered(
        &self,
        budget: Budget,
        target: [u8; 32],
        proven: bool,
        addr: Option<IpAddr>,
        response: Response,
    ) -> Response {
        let status = response.status();
        if status.is_success() {
            self.hooks.prove(target, ());
        } else if proven && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND) {
            self.hooks.forget(&target);
            if let Some(secs) = self.throttled(budget, &Client::Addr(addr)) {
                return rate_limited(budget, secs);
            }
        }
        response
    }
}

fn rate_limited(budget: Budget, secs: u64) -> Response {
    crate::refusals::rate_limited(budget);
    let mut response = ApiError::RateLimited(secs).into_response();
    response.headers_mut().insert(RETRY_AFTER, secs.into());
    response
}

pub async fn guard(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let budget = Budget::of(&req);
    let addr = peer(&req);
    let claim = guard.claim(&req);
    if let Some(secs) = guard.before_lookup(budget, &claim, addr) {
        return rate_limited(budget, secs);
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
    let hook = match claim {
        Claim::Hook { target, proven } => Some((target, proven)),
        _ => None,
    };
    let answer = async {
        match guard.identify(budget, claim, addr).await {
            Ok(identity) => {
                req.extensions_mut().insert(identity);
            }
            Err(refused) => return refused,
        }
        let response = next.run(req).await;
        match hook {
            Some((target, proven)) => guard.delivered(budget, target, proven, addr, response),
            None => response,
        }
    };
    match tokio::time::timeout(guard.timeout, answer).await {
        Ok(response) => response,
        Err(_) => {
            crate::refusals::timed_out();
            ApiError::Timeout.into_response()
        }
    }
}
