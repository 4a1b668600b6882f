//! A fetch's transfer counts as libgit2 reports them, shared with the task that
//! publishes them. libgit2 calls back for every chunk of the pack: recording is a few
//! relaxed atomic stores, and the reader samples them when it pleases.

use std::sync::atomic::{AtomicU64, Ordering};

/// Written by the fetch thread, read by the publisher.
#[derive(Debug, Default)]
pub struct TransferProgress {
    received_objects: AtomicU64,
    total_objects: AtomicU64,
    indexed_objects: AtomicU64,
    indexed_deltas: AtomicU64,
    total_deltas: AtomicU64,
    received_bytes: AtomicU64,
}

/// One reading of [`TransferProgress`]; the fields need not be from the same callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferCounts {
    pub received_objects: u64,
    pub total_objects: u64,
    pub indexed_objects: u64,
    pub indexed_deltas: u64,
    pub total_deltas: u64,
    pub received_bytes: u64,
}

impl TransferProgress {
    pub fn record(&self, p: &git2::Progress<'_>) {
        let set = |a: &AtomicU64, v: usize| a.store(v as u64, Ordering::Relaxed);
        set(&self.received_objects, p.received_objects());
        set(&self.total_objects, p.total_objects());
        set(&self.indexed_objects, p.indexed_objects());
        set(&self.indexed_deltas, p.indexed_deltas());
        set(&self.total_deltas, p.total_deltas());
        set(&self.received_bytes, p.received_bytes());
    }

    pub fn read(&self) -> TransferCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransferCounts {
            received_objects: get(&self.received_objects),
            total_objects: get(&self.total_objects),
            indexed_objects: get(&self.indexed_objects),
            indexed_deltas: get(&self.indexed_deltas),
            total_deltas: get(&self.total_deltas),
            received_bytes: get(&self.received_bytes),
        }
    }
}

impl TransferCounts {
    /// Nothing received yet: the ref listing, the negotiation, or no download at all.
    pub fn is_empty(&self) -> bool {
        self.total_objects == 0 && self.received_bytes == 0
    }
}
