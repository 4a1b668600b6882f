//! A `stasis-scheduler` (leader election, ticks, reaper, notifications) running inside
//! the test's process, on its runtime.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestEnv;

pub struct InProcessScheduler {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl InProcessScheduler {
    /// Stops it as SIGTERM does (leadership released); panics if it hangs.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("scheduler stops")
            .expect("scheduler task");
    }
}

impl TestEnv {
    /// A scheduler with this environment's configuration.
    pub fn spawn_scheduler(&self) -> InProcessScheduler {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(stasis_scheduler::leader::run(
            self.cfg.clone(),
            self.pool.clone(),
            self.redis.clone(),
            stop.clone(),
        ));
        InProcessScheduler { stop, handle }
    }
}
