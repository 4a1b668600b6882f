//! A backend going away, in the log once: a WARN when the first call fails, DEBUG for
//! every failure after it while it stays away, and an INFO with how long it lasted when
//! a call succeeds again. A Redis restart fails every loop that uses it, each second;
//! an operator needs to read that it is away and that it is back, not each attempt.
//! Loops do not all notice a return at once: one that fails within [`SETTLING`] of the
//! first success afterwards (a queue consumer whose registration Redis lost with its
//! data) belongs to the same outage, and is logged at DEBUG.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after a backend's return the failures of loops that have not caught up yet
/// still count as the outage that ended.
pub const SETTLING: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Outage {
    /// `redis`, `postgres`: named in each line.
    backend: &'static str,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the first failure since the last success was.
    since: Option<Instant>,
    /// When the last outage ended.
    ended: Option<Instant>,
    /// The failures since the last success came while settling: no WARN was logged, so
    /// their end is no INFO either.
    settling: bool,
}

/// What a call's result did to the outage: for the caller's own log or metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first failure: the outage starts.
    Began,
    /// Another failure of the same outage.
    Continues,
    /// The first success after failures; the outage lasted this long.
    Ended(Duration),
    /// A success with no outage on.
    Healthy,
}

impl Outage {
    pub const fn new(backend: &'static str) -> Self {
        Self {
            backend,
            state: Mutex::new(State {
                since: None,
                ended: None,
                settling: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call failed since the last success.
    pub fn is_on(&self) -> bool {
        self.state().since.is_some()
    }

    /// A call (`what`) failed with `error`.
    pub fn failed(&self, what: &str, error: &dyn Display) -> Change {
        let mut state = self.state();
        let backend = self.backend;
        if state.since.is_some() {
            tracing::debug!(backend, %error, "{what} failed; {backend} still unreachable");
            return Change::Continues;
        }
        state.since = Some(Instant::now());
        if state.ended.is_some_and(|at| at.elapsed() < SETTLING) {
            state.settling = true;
            tracing::debug!(backend, %error, "{what} failed while {backend} settles after its return");
            return Change::Continues;
        }
        tracing::warn!(
            backend,
            %error,
            "{backend} unreachable ({what} failed); retrying, quietly until it answers"
        );
        Change::Began
    }

    /// A call succeeded.
    pub fn succeeded(&self) -> Change {
        let mut state = self.state();
        let Some(began) = state.since.take() else {
            return Change::Healthy;
        };
        let lasted = began.elapsed();
        let backend = self.backend;
        if std::mem::take(&mut state.settling) {
            tracing::debug!(backend, "{backend} answers every loop again");
            return Change::Healthy;
        }
        state.ended = Some(Instant::now());
        tracing::info!(
            backend,
            outage_ms = lasted.as_millis() as u64,
            "{backend} reachable again"
        );
        Change::Ended(lasted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_outage_is_one_start_and_one_end() {
        let redis = Outage::new("redis");
        assert_eq!(redis.succeeded(), Change::Healthy);
        assert_eq!(redis.failed("ping", &"refused"), Change::Began);
        assert!(redis.is_on());
        assert_eq!(redis.failed("ping", &"refused"), Change::Continues);
        assert_eq!(redis.failed("lease", &"refused"), Change::Continues);
        assert!(matches!(redis.succeeded(), Change::Ended(_)));
        assert!(!redis.is_on());
        assert_eq!(redis.succeeded(), Change::Healthy);
        assert_eq!(
            redis.failed("consumer", &"worker not registered"),
            Change::Continues,
            "a loop catching up just after the return is the same outage"
        );
        assert_eq!(redis.succeeded(), Change::Healthy, "no second recovery");
    }

    #[test]
    fn a_failure_long_after_a_return_is_a_new_outage() {
        let redis = Outage::new("redis");
        assert_eq!(redis.failed("ping", &"refused"), Change::Began);
        assert!(matches!(redis.succeeded(), Change::Ended(_)));
        redis.state().ended = Some(Instant::now() - SETTLING - Duration::from_secs(1));
        assert_eq!(redis.failed("ping", &"refused"), Change::Began);
    }
}
