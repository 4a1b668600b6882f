//! Stopping a fetch from outside its thread: the supervising task sets the flag, and
//! every place the fetch waits (our transports' socket slices, libgit2's progress
//! callbacks, the write gate) looks at it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Why a fetch stopped before finishing, when it was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Timeout,
    /// The repository lock was lost or the worker is shutting down hard.
    Cancelled,
}

/// Shared between the fetch thread and the async task supervising it.
#[derive(Debug, Default)]
pub struct StopFlag {
    stop: AtomicBool,
    timed_out: AtomicBool,
}

impl StopFlag {
    pub fn stop(&self, reason: StopReason) {
        if reason == StopReason::Timeout {
            self.timed_out.store(true, Ordering::SeqCst);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> StopReason {
        if self.timed_out.load(Ordering::SeqCst) {
            StopReason::Timeout
        } else {
            StopReason::Cancelled
        }
    }
}
