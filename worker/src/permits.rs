//! The worker's `worker.concurrency` syncs at once, shared by every lane of every
//! storage it serves: the priority lanes are served first, and storages share fairly.
//!
//! Each lane's consumer keeps more deliveries in flight than there are permits, so that
//! a delivery's queue, lock and record bookkeeping runs while other syncs hold the
//! permits; only the sync's git work (and a start record made during it) holds one. The
//! deliveries waiting here must not put a "Sync now" behind them: a scheduled delivery
//! waits while a priority one does. Between storages a free permit goes to the waiting
//! storage that holds the fewest, so one storage's backlog cannot take every permit
//! while another's deliveries wait; a storage with nothing waiting lends its share.

use std::collections::HashMap;
use std::sync::Mutex;

use stasis_shared::domain::Lane;
use tokio::sync::Notify;

pub struct SyncPermits {
    total: usize,
    state: Mutex<State>,
    /// Woken whenever a permit is given back or a waiter leaves.
    changed: Notify,
}

#[derive(Default)]
struct State {
    held: usize,
    /// Per storage: permits held, and deliveries waiting for one.
    running: HashMap<String, usize>,
    waiting: HashMap<String, usize>,
    priority_waiting: usize,
}

impl State {
    /// Whether a delivery of `storage`'s `lane` may take a free permit now.
    fn may_take(&self, total: usize, storage: &str, lane: Lane) -> bool {
        if self.held >= total {
            return false;
        }
        if lane == Lane::Scheduled && self.priority_waiting > 0 {
            return false;
        }
        let mine = self.running.get(storage).copied().unwrap_or(0);
        // the permit goes to a storage holding no more than any other that waits
        self.waiting
            .iter()
            .filter(|(other, n)| **n > 0 && other.as_str() != storage)
            .all(|(other, _)| mine <= self.running.get(other).copied().unwrap_or(0))
    }
}

/// A held permit; given back when dropped.
pub struct Permit<'a> {
    permits: &'a SyncPermits,
    storage: String,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.permits.lock();
            state.held -= 1;
            if let Some(n) = state.running.get_mut(&self.storage) {
                *n = n.saturating_sub(1);
            }
        }
        self.permits.changed.notify_waiters();
    }
}

/// A delivery counted as waiting until it holds its permit or is dropped.
struct Waiting<'a> {
    permits: &'a SyncPermits,
    storage: &'a str,
    lane: Lane,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.permits.lock();
            if let Some(n) = state.waiting.get_mut(self.storage) {
                *n = n.saturating_sub(1);
            }
            if self.lane == Lane::Priority {
                state.priority_waiting -= 1;
            }
        }
        self.permits.changed.notify_waiters();
    }
}

impl SyncPermits {
    pub fn new(concurrency: usize) -> Self {
        Self {
            total: concurrency,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // a panic while holding this short lock leaves counts that are still whole
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn acquire<'a>(&'a self, storage: &'a str, lane: Lane) -> Permit<'a> {
        {
            let mut state = self.lock();
            *state.waiting.entry(storage.to_owned()).or_default() += 1;
            if lane == Lane::Priority {
                state.priority_waiting += 1;
            }
        }
        let waiting = Waiting {
            permits: self,
            storage,
            lane,
        };
        loop {
            // registered before the check, so a release between the two is not missed
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.may_take(self.total, storage, lane) {
                    state.held += 1;
                    *state.running.entry(storage.to_owned()).or_default() += 1;
                    drop(state);
                    // no longer waiting: its drop wakes the others, whose turn may be now
                    drop(waiting);
                    return Permit {
                        permits: self,
                        storage: storage.to_owned(),
                    };
                }
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// Queues `lane` deliveries behind the one permit (held by the test), in order; each
    /// reports its name once it holds the permit, then gives it back.
    #[tokio::test]
    async fn a_waiting_priority_delivery_goes_before_scheduled_ones_queued_earlier() {
        let permits = Arc::new(SyncPermits::new(1));
        let held = permits.acquire("a", Lane::Scheduled).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (name, lane) in [
            ("scheduled 1", Lane::Scheduled),
            ("scheduled 2", Lane::Scheduled),
            ("priority", Lane::Priority),
        ] {
            let (permits, tx) = (permits.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire("a", lane).await;
                tx.send(name).unwrap();
            });
            // each is queued before the next arrives
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(rx.recv().await.unwrap());
        }
        assert_eq!(order[0], "priority", "{order:?}");
        order.sort();
        assert_eq!(order, ["priority", "scheduled 1", "scheduled 2"]);
        assert_eq!(permits.lock().priority_waiting, 0);
    }

    #[tokio::test]
    async fn never_more_holders_than_permits() {
        let permits = Arc::new(SyncPermits::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (permits, holding, most) = (permits.clone(), holding.clone(), most.clone());
                let lane = if i % 3 == 0 {
                    Lane::Priority
                } else {
                    Lane::Scheduled
                };
                let storage = if i % 2 == 0 { "a" } else { "b" };
                tokio::spawn(async move {
                    let _permit = permits.acquire(storage, lane).await;
                    let now = holding.fetch_add(1, Ordering::AcqRel) + 1;
                    most.fetch_max(now, Ordering::AcqRel);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    holding.fetch_sub(1, Ordering::AcqRel);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::Acquire), 2);
        let state = permits.lock();
        assert_eq!(state.held, 0);
        assert!(state.waiting.values().all(|n| *n == 0));
    }

    /// Storage `a` has 30 deliveries queued before `b`'s 10 arrive; with 4 permits each
    /// holding for a while, `b` gets half the permits as soon as it waits, not after
    /// `a`'s backlog.
    #[tokio::test]
    async fn storages_share_the_permits_while_both_wait() {
        let permits = Arc::new(SyncPermits::new(4));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spawn = |storage: &'static str| {
            let (permits, tx) = (permits.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire(storage, Lane::Scheduled).await;
                tx.send(storage).unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            })
        };
        let mut tasks: Vec<_> = (0..30).map(|_| spawn("a")).collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        tasks.extend((0..10).map(|_| spawn("b")));
        for task in tasks {
            task.await.unwrap();
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(storage) = rx.recv().await {
            order.push(storage);
        }
        // first come, first served would give `b` the last 10 permits; shared, `b` is
        // through long before `a`'s backlog (about 4 + 2 × 10 grants)
        let last_b = order.iter().rposition(|s| *s == "b").unwrap();
        assert!(last_b < 30, "{order:?}");
        assert_eq!(order[..4], ["a"; 4], "{order:?}");
        assert!(order[4..8].contains(&"b"), "{order:?}");
        // and `a` alone may take every permit while no other storage waits
        let a_alone = SyncPermits::new(3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a_alone.acquire("a", Lane::Scheduled).await);
        }
        assert_eq!(a_alone.lock().running["a"], 3);
        drop(held);
    }
}
