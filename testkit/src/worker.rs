//! A `stasis-worker` running inside the test's process, on its runtime.

use std::time::Duration;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestEnv;

pub struct InProcessWorker {
    stop: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

impl InProcessWorker {
    pub fn start(cfg: Config, pool: PgPool, redis: ConnectionManager) -> Self {
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let handle = tokio::spawn(stasis_worker::runner::run(cfg, pool, redis, async move {
            signal.cancelled().await
        }));
        Self { stop, handle }
    }

    /// Stops it as SIGTERM does (in-flight syncs finish); panics if it fails or hangs.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("worker stops")
            .expect("worker task")
            .expect("worker exits cleanly");
    }
}

impl TestEnv {
    /// A worker with this environment's configuration.
    pub fn spawn_worker(&self) -> InProcessWorker {
        InProcessWorker::start(self.cfg.clone(), self.pool.clone(), self.redis.clone())
    }
}
