//! Which backend is failing right now, as this process sees it, and the deadline that
//! answers a request stuck on it with a 503 naming it.
//!
//! Every Redis command and every wait for a pooled connection is bounded on its own,
//! but a request issues several in a row, and a statement on a connection to a frozen
//! Postgres (a paused VM, `SIGSTOP`) never returns: neither `statement_timeout` (the
//! server is not running) nor TCP (the kernel still acknowledges) ends it. So a watch
//! checks both backends several times a second, and a request still unanswered after
//! `api.unavailable_after` while one of them fails its check is answered 503 at once.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redis::aio::ConnectionManager;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// How often the watch checks each backend.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// A check unanswered by then fails: a frozen backend is known within
/// `CHECK_EVERY + CHECK_WITHIN` of freezing.
const CHECK_WITHIN: Duration = Duration::from_millis(400);
/// After the deadline, how often a request still running looks at the verdict again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// Since when each backend fails its checks (ms since [`epoch`], 0: it does not).
#[derive(Debug, Default)]
pub struct BackendHealth {
    postgres: AtomicU64,
    redis: AtomicU64,
}

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn record(since: &AtomicU64, ok: bool) {
    if ok {
        since.store(0, Ordering::Relaxed);
    } else {
        let now = (epoch().elapsed().as_millis() as u64).max(1);
        let _ = since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl BackendHealth {
    /// The backend failing its checks, the one failing longest when both are. Without a
    /// running [`watch`] nothing ever fails.
    pub fn failing(&self) -> Option<&'static str> {
        let pg = self.postgres.load(Ordering::Relaxed);
        let redis = self.redis.load(Ordering::Relaxed);
        match (pg, redis) {
            (0, 0) => None,
            (0, _) => Some("redis"),
            (_, 0) => Some("postgres"),
            (pg, redis) if pg <= redis => Some("postgres"),
            _ => Some("redis"),
        }
    }
}

/// Checks both backends every [`CHECK_EVERY`] for as long as it runs. The Redis check
/// goes over the shared connection, which also makes its manager notice a restart
/// before a request does; the Postgres check over a connection of its own, so a pool
/// busy with requests does not count as Postgres failing.
pub async fn watch(health: Arc<BackendHealth>, redis: ConnectionManager, database_url: String) {
    let options = PgConnectOptions::from_str(&database_url)
        .map(|o| o.disable_statement_logging())
        .ok();
    let mut pg: Option<PgConnection> = None;
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let redis_ok = stasis_shared::queue::ping(&redis, CHECK_WITHIN);
        let pg_ok = async {
            let Some(options) = &options else {
                return true;
            };
            let ok = tokio::time::timeout(CHECK_WITHIN, async {
                if pg.is_none() {
                    pg = Some(PgConnection::connect_with(options).await?);
                }
                match pg.as_mut() {
                    Some(conn) => conn.ping().await,
                    None => Ok(()),
                }
            })
            .await;
            let ok = matches!(ok, Ok(Ok(())));
            if !ok {
                // a connection that failed or hung is not trusted again
                pg = None;
            }
            ok
        };
        let (redis_ok, pg_ok) = tokio::join!(redis_ok, pg_ok);
        record(&health.redis, redis_ok);
        record(&health.postgres, pg_ok);
    }
}

/// Answers a request still running after `api.unavailable_after` with 503 naming the
/// backend that fails its checks, if one does; otherwise lets it run on (a slow
/// upstream is not an outage), up to `api.request_timeout`.
///
/// The handler runs in a task of its own and is not cut off when the 503 goes out: a
/// request stopped between two of its writes would leave half of them behind. It ends
/// within the backends' own bounds, or as soon as a frozen one resumes.
pub async fn answer_within(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Not aborted when the client goes away either: a handler dropped between its
    // statements can hand its pooled connection back in the middle of a transaction
    // (sqlx's `begin` cancelled before it counted the transaction), and the next
    // request on that connection fails or writes into it. It ends within the backends'
    // bounds and `api.request_timeout`, holding its concurrency permit until then.
    let mut handler = tokio::spawn(next.run(req).instrument(tracing::Span::current()));
    let mut wait = state.cfg.api.unavailable_after;
    loop {
        match tokio::time::timeout(wait, &mut handler).await {
            Ok(Ok(response)) => return response,
            Ok(Err(e)) => {
                return ApiError::Internal(format!("request handler failed: {e}")).into_response()
            }
            Err(_) => {
                if let Some(dependency) = state.health.failing() {
                    stasis_shared::error::count_backend_error(Some(dependency), "request");
                    return ApiError::Unavailable(dependency).into_response();
                }
                wait = LOOK_AGAIN;
            }
        }
    }
}
