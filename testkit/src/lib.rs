//! Test environments on the real services: each test gets its own Postgres database and
//! Redis key namespace (so tests run in parallel), and builds its own git upstreams.
//! For the upstream transports: misbehaving git:// servers ([`hostile`]), a smart-HTTP
//! git server ([`http`]) with Git LFS ([`lfs`]) and TLS in front of it ([`https`]), a
//! rebinding DNS server ([`dns`]) and test bodies run in a network namespace of their
//! own ([`netns`]); for the scheduler, an upstream's grokmirror manifest over HTTP
//! ([`manifest`]).

mod background;
pub mod dns;
pub mod env;
pub mod fleet;
pub mod git;
pub mod hostile;
pub mod http;
pub mod https;
pub mod latency;
pub mod lfs;
pub mod manifest;
pub mod netns;
pub mod pooler;
pub mod process;
pub mod proxy;
pub mod scheduler;
pub mod services;
pub mod sshd;
pub mod tls;
pub mod worker;

pub use env::TestEnv;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` for `period` and panics naming `what` the first time it is false: for
/// a property that must hold throughout a stretch of time (a lock outliving its TTL
/// while its holder waits, a leader keeping its lease), checked at every poll rather
/// than once after a pause.
pub async fn throughout<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + period;
    let mut checks = 0u32;
    loop {
        checks += 1;
        assert!(
            check().await,
            "{what} stopped holding after {checks} checks"
        );
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
