//! What this API process refused or held back since it started, for the operator page:
//! each event counted in the Prometheus metric and in a process-wide tally the
//! `GET /admin/queue` answer carries (the metrics are the fleet's view; this one needs
//! no Prometheus).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

use crate::guard::Budget;

static RATE_LIMITED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static COALESCED: AtomicU64 = AtomicU64::new(0);
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static OVERLOADED: AtomicU64 = AtomicU64::new(0);

/// Since this API process started; several API processes each count their own.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ApiRefusals {
    /// Requests answered 429, by budget.
    pub rate_limited_read: u64,
    pub rate_limited_write: u64,
    pub rate_limited_import: u64,
    /// Manual and webhook sync requests that started no sync at once.
    pub coalesced_syncs: u64,
    /// Requests answered 504 after `api.request_timeout`.
    pub timeouts: u64,
    /// Requests shed with 503 at `api.max_concurrent_requests`.
    pub overloaded: u64,
}

pub fn now() -> ApiRefusals {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    ApiRefusals {
        rate_limited_read: get(&RATE_LIMITED[Budget::Read as usize]),
        rate_limited_write: get(&RATE_LIMITED[Budget::Write as usize]),
        rate_limited_import: get(&RATE_LIMITED[Budget::Import as usize]),
        coalesced_syncs: get(&COALESCED),
        timeouts: get(&TIMEOUTS),
        overloaded: get(&OVERLOADED),
    }
}

pub fn rate_limited(budget: Budget) {
    RATE_LIMITED[budget as usize].fetch_add(1, Ordering::Relaxed);
    metrics::counter!("stasis_api_rate_limited_total", "budget" => budget.as_str()).increment(1);
}

pub fn coalesced(reason: &'static str) {
    COALESCED.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("stasis_api_coalesced_syncs_total", "reason" => reason).increment(1);
}

pub fn timed_out() {
    TIMEOUTS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("stasis_api_timeouts_total").increment(1);
}

pub fn overloaded() {
    OVERLOADED.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("stasis_api_overloaded_total").increment(1);
}
