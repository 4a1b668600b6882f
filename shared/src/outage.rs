//! A backend going away, in the log once: a WARN when the first call fails, DEBUG for
//! every failure after it while it stays away, and an INFO with how long it lasted when
//! a call succeeds again. A Redis restart fails every loop that uses it, each second;
//! an operator needs to read that it is away and that it is back, not each attempt.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Outage {
    /// `redis`, `postgres`: named in each line.
    backend: &'static str,
    since: Mutex<Option<Instant>>,
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
            since: Mutex::new(None),
        }
    }

    /// Whether a call failed since the last success.
    pub fn is_on(&self) -> bool {
        self.since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A call (`what`) failed with `error`.
    pub fn failed(&self, what: &str, error: &dyn Display) -> Change {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let backend = self.backend;
        if since.is_some() {
            tracing::debug!(backend, %error, "{what} failed; {backend} still unreachable");
            return Change::Continues;
        }
        *since = Some(Instant::now());
        tracing::warn!(
            backend,
            %error,
            "{backend} unreachable ({what} failed); retrying, quietly until it answers"
        );
        Change::Began
    }

    /// A call succeeded.
    pub fn succeeded(&self) -> Change {
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        let Some(began) = since.take() else {
            return Change::Healthy;
        };
        let lasted = began.elapsed();
        let backend = self.backend;
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
            redis.failed("ping", &"refused"),
            Change::Began,
            "a new outage"
        );
    }
}
