//! What a sync holds in Redis while it runs (its repository lease, its sync slot),
//! renewed by a task that ends with the guard: a sync whose future is dropped midway
//! (its consumer restarted, its task aborted) renews nothing afterwards, so the lease
//! expires and another worker takes the repository.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::git::fetch::{StopFlag, StopReason};
use crate::slots::{SlotGuard, Slots};
use stasis_shared::lock::{Lease, Leases, Renewal};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Renews something for as long as it is held.
pub(crate) struct KeepAlive(JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Longest one renewal may take before it counts as failed: a hung Redis must not hold
/// the next attempt back past the lease's expiry.
fn attempt_bound(ttl: Duration) -> Duration {
    ttl / 6
}

/// How soon a failed renewal is tried again: several tries fit in what is left of the
/// lease.
fn retry_after(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(1))
}

impl KeepAlive {
    /// Renews the repository lease every third of `ttl`, a failed renewal again within a
    /// second. A lease another worker now holds stops the fetch; one that could not be
    /// renewed for a whole `ttl` does too, since it may have expired and been taken.
    pub(crate) fn lease(leases: Leases, lease: Lease, ttl: Duration, stop: Arc<StopFlag>) -> Self {
        Self(tokio::spawn(async move {
            let mut last_ok = Instant::now();
            let mut next = ttl / 3;
            loop {
                tokio::time::sleep(next).await;
                next = ttl / 3;
                let renewed = tokio::time::timeout(attempt_bound(ttl), leases.renew(&lease, ttl))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()));
                match renewed {
                    Ok(Renewal::Renewed) => last_ok = Instant::now(),
                    Ok(Renewal::Reclaimed) => {
                        // Redis restarted without its data: nobody else took it, and the
                        // fence counter was put back above this lease's fence
                        info!("repository lock had vanished from Redis; held again");
                        last_ok = Instant::now();
                    }
                    Ok(Renewal::Lost) => {
                        warn!("repository lock is held by another worker; stopping the fetch");
                        stop.stop(StopReason::Cancelled);
                        return;
                    }
                    Err(e) if last_ok.elapsed() >= ttl => {
                        warn!(error = %e, "repository lock could not be renewed before expiry; stopping the fetch");
                        stop.stop(StopReason::Cancelled);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "repository lock renewal failed; will retry");
                        next = retry_after(ttl);
                    }
                }
            }
        }))
    }

    /// Keeps a sync slot from expiring. A slot that lapses anyway only lets one more
    /// sync of its host start early: not worth stopping this one for.
    pub(crate) fn slot(slots: Slots, slot: SlotGuard, ttl: Duration) -> Self {
        Self(tokio::spawn(async move {
            let mut next = ttl / 3;
            loop {
                tokio::time::sleep(next).await;
                next = ttl / 3;
                let renewed = tokio::time::timeout(attempt_bound(ttl), slots.renew(&slot, ttl))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()));
                if let Err(e) = renewed {
                    warn!(error = %e, "sync slot renewal failed; will retry");
                    next = retry_after(ttl);
                }
            }
        }))
    }
}

fn timed_out() -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "renewal took too long").into()
}
