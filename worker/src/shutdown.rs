//! The syncs this process has in flight, so a shutdown can stop them once
//! `worker.shutdown_grace` has passed instead of leaving them to the lock's expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::git::fetch::{StopFlag, StopReason};
use tracing::info;

#[derive(Debug, Default)]
pub struct InFlightSyncs {
    next: AtomicU64,
    flags: Mutex<HashMap<u64, Arc<StopFlag>>>,
    /// Set before any flag is stopped for the shutdown: a sync that sees its flag stopped
    /// and this set was interrupted, not cut off by a lost lock.
    shutting_down: AtomicBool,
}

impl InFlightSyncs {
    /// Counts `stop` as in flight until the returned guard drops. A sync registered after
    /// the shutdown stopped the others is stopped at once.
    pub fn register(self: &Arc<Self>, stop: &Arc<StopFlag>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, stop.clone());
        if self.shutting_down.load(Ordering::SeqCst) {
            stop.stop(StopReason::Cancelled);
        }
        Registered {
            syncs: self.clone(),
            id,
        }
    }

    /// Stops every sync in flight; each records its run as interrupted and requeues its
    /// job.
    pub fn stop_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let flags = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        info!(
            syncs = flags.len(),
            "shutdown grace over: stopping in-flight syncs"
        );
        for stop in flags.values() {
            stop.stop(StopReason::Cancelled);
        }
    }

    /// Whether a sync whose flag is `stop` was stopped by the shutdown.
    pub fn interrupted(&self, stop: &StopFlag) -> bool {
        stop.is_stopped() && self.shutting_down.load(Ordering::SeqCst)
    }
}

pub struct Registered {
    syncs: Arc<InFlightSyncs>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.syncs
            .flags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_all_stops_registered_and_later_syncs_as_interrupted() {
        let syncs = Arc::new(InFlightSyncs::default());
        let (a, b, lost) = (
            Arc::new(StopFlag::default()),
            Arc::new(StopFlag::default()),
            Arc::new(StopFlag::default()),
        );
        let _a = syncs.register(&a);
        let _lost = syncs.register(&lost);
        lost.stop(StopReason::Cancelled);
        assert!(!syncs.interrupted(&lost), "a lost lock is not a shutdown");
        drop(syncs.register(&Arc::new(StopFlag::default())));
        assert_eq!(syncs.flags.lock().unwrap().len(), 2);

        syncs.stop_all();
        assert!(a.is_stopped() && syncs.interrupted(&a));
        let _b = syncs.register(&b);
        assert!(b.is_stopped(), "registered after the stop");
    }
}
