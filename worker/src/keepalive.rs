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

impl KeepAlive {
    /// Renews the repository lease every third of `ttl`. A lease another worker now
    /// holds stops the fetch; one that could not be renewed for a whole `ttl` does too,
    /// since it may have expired and been taken.
    pub(crate) fn lease(leases: Leases, lease: Lease, ttl: Duration, stop: Arc<StopFlag>) -> Self {
        Self(tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(ttl / 3).await;
                match leases.renew(&lease, ttl).await {
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
                    Err(e) => warn!(error = %e, "repository lock renewal failed; will retry"),
                }
            }
        }))
    }

    /// Keeps a sync slot from expiring. A slot that lapses anyway only lets one more
    /// sync of its host start early: not worth stopping this one for.
    pub(crate) fn slot(slots: Slots, slot: SlotGuard, ttl: Duration) -> Self {
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = slots.renew(&slot, ttl).await {
                    warn!(error = %e, "sync slot renewal failed; will retry");
                }
            }
        }))
    }
}
