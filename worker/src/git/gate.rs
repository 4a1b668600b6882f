//! Lets a fetch read upstream's refs before its attempt is recorded, and holds its first
//! write to the mirror until the attempt is. Most syncs find nothing new: they end at the
//! ref listing and are recorded, start and end, in one statement.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::stop::{StopFlag, StopReason};

/// Shared by the fetch thread, which asks, and the task supervising it, which decides.
#[derive(Debug, Default)]
pub struct WriteGate {
    /// `Some(true)`: write; `Some(false)`: stop without writing.
    decision: Mutex<Option<bool>>,
    decided: Condvar,
    asked: Notify,
}

/// How often a waiting fetch thread looks at its stop flag and deadline.
const RECHECK: Duration = Duration::from_millis(100);

impl WriteGate {
    /// Fetch thread: asks to write and blocks until the supervisor decides, the fetch is
    /// stopped or its deadline passes (which stops it as timed out). `true` means write.
    pub fn wait_open(&self, stop: &StopFlag, deadline: Instant) -> bool {
        // stored as a permit when nobody waits yet, so an ask is never missed
        self.asked.notify_one();
        let mut decision = self.decision.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(open) = *decision {
                return open;
            }
            if Instant::now() >= deadline {
                stop.stop(StopReason::Timeout);
            }
            if stop.is_stopped() {
                return false;
            }
            decision = self
                .decided
                .wait_timeout(decision, RECHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Supervisor: resolves once the fetch thread waits to write.
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// Supervisor: lets the fetch write (`true`) or makes it stop before writing. The
    /// first decision stands.
    pub fn decide(&self, open: bool) {
        let mut decision = self.decision.lock().unwrap_or_else(PoisonError::into_inner);
        decision.get_or_insert(open);
        self.decided.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::task::JoinHandle;

    use super::*;

    /// A fetch thread waiting at a fresh gate, with its gate and stop flag.
    fn waiting_fetch() -> (Arc<WriteGate>, Arc<StopFlag>, JoinHandle<bool>) {
        let gate = Arc::new(WriteGate::default());
        let stop = Arc::new(StopFlag::default());
        let deadline = Instant::now() + Duration::from_secs(30);
        let thread = {
            let (gate, stop) = (gate.clone(), stop.clone());
            tokio::task::spawn_blocking(move || gate.wait_open(&stop, deadline))
        };
        (gate, stop, thread)
    }

    #[tokio::test]
    async fn a_waiting_fetch_gets_the_decision_and_an_early_one_stands() {
        let (gate, stop, thread) = waiting_fetch();
        tokio::time::timeout(Duration::from_secs(5), gate.asked())
            .await
            .expect("the fetch thread asks");
        gate.decide(true);
        gate.decide(false);
        assert!(thread.await.unwrap(), "the first decision opens the gate");
        let later = Instant::now() + Duration::from_secs(30);
        assert!(gate.wait_open(&stop, later), "a later ask sees it open");
    }

    #[tokio::test]
    async fn a_stopped_or_late_fetch_does_not_write() {
        let (gate, stop, thread) = waiting_fetch();
        gate.asked().await;
        stop.stop(StopReason::Cancelled);
        assert!(!thread.await.unwrap(), "stopped while waiting");

        let fresh = WriteGate::default();
        let past = Instant::now();
        assert!(
            !fresh.wait_open(&StopFlag::default(), past),
            "deadline passed"
        );
        fresh.decide(true);
        assert!(
            fresh.wait_open(&StopFlag::default(), past),
            "decided beats deadline"
        );
    }
}
