//! The worker's `worker.concurrency` syncs at once, shared by both lanes, with the
//! priority lane served first.
//!
//! Each lane's consumer keeps more deliveries in flight than there are permits, so that
//! a delivery's queue, lock and record bookkeeping runs while other syncs hold the
//! permits; only the sync's git work (and a start record made during it) holds one. The
//! deliveries waiting here must not put a "Sync now" behind them: a scheduled delivery
//! that gets a permit while a priority one waits hands it on.

use std::sync::atomic::{AtomicUsize, Ordering};

use stasis_shared::domain::Lane;
use tokio::sync::{Semaphore, SemaphorePermit};

pub struct SyncPermits {
    permits: Semaphore,
    priority_waiting: AtomicUsize,
}

impl SyncPermits {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Semaphore::new(concurrency),
            priority_waiting: AtomicUsize::new(0),
        }
    }

    pub async fn acquire(&self, lane: Lane) -> SemaphorePermit<'_> {
        match lane {
            Lane::Priority => {
                let _waiting = Waiting::count(&self.priority_waiting);
                self.acquire_any().await
            }
            Lane::Scheduled => loop {
                let permit = self.acquire_any().await;
                if self.priority_waiting.load(Ordering::Acquire) == 0 {
                    return permit;
                }
                // The semaphore is first come, first served: the permit goes to the
                // next waiter, and this delivery queues again behind the priority one.
                drop(permit);
                tokio::task::yield_now().await;
            },
        }
    }

    async fn acquire_any(&self) -> SemaphorePermit<'_> {
        self.permits
            .acquire()
            .await
            .expect("the permits semaphore is never closed")
    }
}

/// A priority delivery counted as waiting until it holds its permit or is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// Queues `lane` deliveries behind the one permit (held by the test), in order; each
    /// reports its name once it holds the permit, then gives it back.
    #[tokio::test]
    async fn a_waiting_priority_delivery_goes_before_scheduled_ones_queued_earlier() {
        let permits = Arc::new(SyncPermits::new(1));
        let held = permits.acquire(Lane::Scheduled).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (name, lane) in [
            ("scheduled 1", Lane::Scheduled),
            ("scheduled 2", Lane::Scheduled),
            ("priority", Lane::Priority),
        ] {
            let (permits, tx) = (permits.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire(lane).await;
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
        // the scheduled ones may swap places as they hand the permit on
        assert_eq!(order[0], "priority", "{order:?}");
        order.sort();
        assert_eq!(order, ["priority", "scheduled 1", "scheduled 2"]);
        assert_eq!(permits.priority_waiting.load(Ordering::Acquire), 0);
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
                tokio::spawn(async move {
                    let _permit = permits.acquire(lane).await;
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
    }
}
