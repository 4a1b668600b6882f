//! Recovery within seconds, run by the leader every second: Postgres is the record and
//! Redis is rebuilt from it.
//!
//! - A worker that died (its registry row in Postgres *and* its liveness key in Redis
//!   both lapsed, so an outage of one backend alone rescues nothing) has its running
//!   jobs sent back to pending with a fresh delivery; their leases and slots name the
//!   dead worker, so the next worker takes them over at once.
//! - When Redis lost data (see [`EpochWatch`]) a new epoch starts and every pending job
//!   delivered before it whose delivery is not in Redis any more is delivered again.
//!
//! The reaper (`scheduler.stuck_after`) stays as the backstop for anything else.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::recovery::{self, Orphan};
use stasis_shared::domain::lifecycle::rescue;
use stasis_shared::domain::SyncMirror;
use stasis_shared::jobs::Jobs;
use stasis_shared::liveness;
use stasis_shared::queue::{self, EpochWatch};
use stasis_shared::Config;
use tracing::{info, warn};

use crate::error::SchedulerError;

/// Rows handled per query: a pass stays short, the next one continues.
const BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Running jobs of dead workers sent back to pending and delivered again.
    pub rescued: u64,
    /// Pending jobs delivered again after Redis lost data.
    pub redelivered: u64,
}

/// The leader's memory between passes.
#[derive(Debug, Default)]
pub struct Recovery {
    watch: EpochWatch,
    /// The epoch whose re-delivery has completed; `None` until this leader has checked.
    reconciled: Option<i64>,
}

impl Recovery {
    /// A leader again later checks the epoch afresh: another leader may have started
    /// one meanwhile. What it saw of the Redis server (its `run_id`) still holds: losing
    /// leadership is often the first sign of a Redis restart.
    pub fn lost_leadership(&mut self) {
        self.reconciled = None;
    }

    pub async fn pass(
        &mut self,
        cfg: &Config,
        pool: &PgPool,
        redis: &ConnectionManager,
        job_service: &Jobs,
    ) -> Result<Recovered, SchedulerError> {
        let ns = &cfg.queue.namespace;
        let mut done = Recovered {
            rescued: rescue_dead_workers(cfg, pool, redis, job_service).await?,
            ..Recovered::default()
        };
        let epoch = match self.watch.look(redis, ns).await? {
            Some(lost) => {
                let epoch = recovery::next_epoch(pool).await?;
                // Only a job waiting for its delivery can have lost one: a Redis never
                // marked (a new stack), or restarted while nothing waited, lost nothing.
                let waiting = !recovery::delivered_before(pool, epoch, None, 1)
                    .await?
                    .is_empty();
                if waiting {
                    warn!(
                        sign = lost.as_str(),
                        epoch, "Redis lost data: re-delivering pending jobs from Postgres"
                    );
                    metrics::counter!("stasis_redis_data_lost_total", "sign" => lost.as_str())
                        .increment(1);
                } else {
                    info!(
                        sign = lost.as_str(),
                        epoch,
                        "Redis is new or restarted; no job was waiting on it, nothing to re-deliver"
                    );
                }
                queue::mark(redis, ns, false).await?;
                epoch
            }
            // an API that found the marker gone may have started one
            None => recovery::current_epoch(pool).await?,
        };
        if self.reconciled != Some(epoch) {
            done.redelivered = redeliver_before(pool, redis, &queue::Lanes::of(cfg), epoch).await?;
            self.reconciled = Some(epoch);
        }
        Ok(done)
    }
}

async fn rescue_dead_workers(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
    job_service: &Jobs,
) -> Result<u64, SchedulerError> {
    let window = cfg.queue.liveness_window();
    let silent = recovery::running_on_silent_workers(pool, window, BATCH).await?;
    if silent.is_empty() {
        return Ok(0);
    }
    let mut alive: HashMap<String, bool> = HashMap::new();
    for worker in silent.iter().filter_map(|job| job.worker.as_deref()) {
        if !alive.contains_key(worker) {
            let key = liveness::key(&cfg.queue.namespace, worker);
            let exists: bool = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut redis.clone())
                .await?;
            alive.insert(worker.to_owned(), exists);
        }
    }
    let mut deliveries = Vec::new();
    for job in silent {
        let worker = job.worker.as_deref().unwrap_or_default();
        if alive.get(worker).copied().unwrap_or(false) {
            continue;
        }
        if rescue::requeue_running(pool, job.id).await? {
            info!(job_id = %job.id, repo_id = %job.repo_id, worker, "worker died mid-sync: job re-delivered");
            deliveries.push(delivery(&job));
        }
    }
    let rescued = deliveries.len() as u64;
    if rescued > 0 {
        // at once where their lanes have room; the dispatcher delivers the rest
        job_service.admit(&deliveries).await;
        metrics::counter!("stasis_jobs_redelivered_total", "cause" => "dead_worker")
            .increment(rescued);
    }
    Ok(rescued)
}

/// Every pending job last delivered before `epoch` whose delivery Redis no longer holds
/// waits in Postgres for a fresh one, which the dispatcher delivers as its lane has
/// room (a Redis that lost 10,000 deliveries gets them back in bounded waves); the
/// others are recorded as delivered in `epoch`.
async fn redeliver_before(
    pool: &PgPool,
    redis: &ConnectionManager,
    lanes: &queue::Lanes,
    epoch: i64,
) -> Result<u64, SchedulerError> {
    let present = queue::delivered_jobs(redis, lanes).await?;
    let mut redelivered = 0;
    let mut after = None;
    loop {
        let batch = recovery::delivered_before(pool, epoch, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        let ids: Vec<_> = batch.iter().map(|job| job.id).collect();
        redelivered += recovery::forget_lost(pool, &ids, &present, epoch).await?;
    }
    if redelivered > 0 {
        metrics::counter!("stasis_jobs_redelivered_total", "cause" => "redis_lost")
            .increment(redelivered);
    }
    Ok(redelivered)
}

fn delivery(job: &Orphan) -> SyncMirror {
    crate::reaper::delivery(job.id, job.repo_id, job.reason)
}
