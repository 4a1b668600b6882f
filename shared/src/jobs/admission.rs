//! The one way into a Redis lane. apalis-redis 1.0 fails every worker's fetch once
//! about 8,000 deliveries are due at once in one lane, and a lane is first come, first
//! served; so every delivery is admitted under its lane's bound (`queue.max_backlog`,
//! `queue.max_priority_backlog`), and what does not fit waits in Postgres, which is the
//! record anyway (`sync_jobs.in_queue`, see `db::waiting`).
//!
//! - [`Jobs::admit`] delivers jobs at once while their lane has room: a "Sync now"
//!   on a quiet system starts within a worker's poll.
//! - The dispatcher ([`dispatch_loop`]) delivers everything else as room appears: jobs
//!   that overflowed, retries and postponed deliveries once due (nothing is pushed with
//!   a delay: Postgres holds when a job is due), jobs whose delivery Redis lost. It takes
//!   the priority lane's waiting jobs in turns across owners. Every worker and scheduler
//!   runs one; a lease lets one of them work at a time, so the lanes' bounds hold
//!   whatever the number of processes.
//! - The scheduler's waves open no more jobs than the room the scheduled lanes have,
//!   and each storage's lane takes no more than its own room ([`Jobs::push_opened`]).
//!
//! Each storage has its own two lanes, each under its own bound: a storage whose
//! workers are away fills its own lanes, never another's.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Jobs;
use crate::config::QueueConfig;
use crate::db::waiting;
use crate::domain::{Lane, SyncMirror};
use crate::error::Result;
use crate::lock::{Lease, Leases, Renewal};

/// Each lane's bound on deliveries waiting in Redis.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub priority: u64,
    pub scheduled: u64,
}

impl From<&QueueConfig> for Bounds {
    fn from(cfg: &QueueConfig) -> Self {
        Self {
            priority: cfg.max_priority_backlog,
            scheduled: cfg.max_backlog,
        }
    }
}

impl Bounds {
    pub fn of(self, lane: Lane) -> u64 {
        match lane {
            Lane::Priority => self.priority,
            Lane::Scheduled => self.scheduled,
        }
    }
}

impl Jobs {
    /// Deliveries waiting in `storage`'s `lane` now: ready, or in its scheduled set (the
    /// queue's own retry of a delivery whose handler failed). Taken ones are the
    /// workers' and do not count: a worker fetches no more than its concurrency.
    pub async fn depth(&self, storage: &str, lane: Lane) -> Result<u64> {
        let q = self.lanes().queue(storage, lane);
        let (scheduled, active): (u64, u64) = redis::pipe()
            .zcard(format!("{q}:scheduled"))
            .llen(format!("{q}:active"))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(scheduled + active)
    }

    /// How many more deliveries `storage`'s `lane` takes now.
    pub async fn room(&self, storage: &str, lane: Lane) -> Result<u64> {
        Ok(self
            .bounds
            .of(lane)
            .saturating_sub(self.depth(storage, lane).await?))
    }

    /// Delivers those of `jobs` (pending in Postgres, due, in no lane yet) that fit in
    /// their lane now; the others wait for the dispatcher. Returns how many were
    /// delivered. Never fails: a job it could not deliver (no room, Redis or Postgres
    /// unreachable) is recorded and waits, which is the point.
    pub async fn admit(&self, jobs: &[SyncMirror]) -> usize {
        let routed = match self.routed(jobs.to_vec()).await {
            Ok(routed) => routed,
            Err(e) => {
                debug!(error = %e, "deliveries left to the dispatcher");
                return 0;
            }
        };
        let mut delivered = 0;
        for ((storage, lane), jobs) in routed {
            let ids: Vec<_> = jobs.iter().map(|job| job.job_id).collect();
            match self.admit_lane(&storage, lane, &ids).await {
                Ok(n) => delivered += n,
                Err(e) => {
                    debug!(error = %e, lane = lane.name(), storage, "deliveries left to the dispatcher")
                }
            }
        }
        delivered
    }

    /// [`Self::admit`] for a request's path: answers within [`PROMPT`] whatever Redis's
    /// state (down, or frozen), with how many were delivered by then. An admission still
    /// under way completes, or gives its jobs back to wait, on its own.
    pub async fn admit_promptly(&self, jobs: Vec<SyncMirror>) -> usize {
        let this = self.clone();
        let admission = tokio::spawn(async move { this.admit(&jobs).await });
        match tokio::time::timeout(PROMPT, admission).await {
            Ok(Ok(n)) => n,
            _ => 0,
        }
    }

    async fn admit_lane(&self, storage: &str, lane: Lane, ids: &[uuid::Uuid]) -> Result<usize> {
        let _turn = self.admitting.lock().await;
        let room = self.room(storage, lane).await? as usize;
        if room == 0 {
            metrics::counter!("stasis_queue_admissions_deferred_total", "lane" => lane.name())
                .increment(ids.len() as u64);
            return Ok(0);
        }
        let claimed = waiting::claim(&self.pool, &ids[..ids.len().min(room)]).await?;
        self.deliver_claimed(lane, claimed).await
    }

    /// Pushes jobs just claimed for `lane`; gives them back to wait if the push fails.
    async fn deliver_claimed(&self, lane: Lane, claimed: Vec<SyncMirror>) -> Result<usize> {
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let ids: Vec<_> = claimed.iter().map(|job| job.job_id).collect();
        if let Err(e) = self.push(claimed).await {
            waiting::unclaim(&self.pool, &ids).await?;
            return Err(e);
        }
        metrics::counter!("stasis_queue_admitted_total", "lane" => lane.name()).increment(n as u64);
        Ok(n)
    }

    /// Pushes jobs the scheduler opened already claimed for the scheduled lane, as far
    /// as each storage's lane has room; the rest wait in Postgres for the dispatcher (a
    /// storage whose workers are away fills its own lane, never the others').
    pub async fn push_opened(&self, jobs: Vec<SyncMirror>) -> Result<()> {
        for ((storage, lane), jobs) in self.routed(jobs).await? {
            let room = self.room(&storage, lane).await? as usize;
            let (fits, over) = jobs.split_at(jobs.len().min(room));
            if !over.is_empty() {
                let ids: Vec<_> = over.iter().map(|job| job.job_id).collect();
                waiting::unclaim(&self.pool, &ids).await?;
                metrics::counter!("stasis_queue_admissions_deferred_total", "lane" => lane.name())
                    .increment(ids.len() as u64);
            }
            self.push(fits.to_vec()).await?;
        }
        Ok(())
    }

    /// One dispatcher pass: fills each storage's lanes that have due waiting jobs up to
    /// their bound. Returns how many were delivered.
    pub async fn dispatch(&self) -> Result<u64> {
        let mut delivered = 0;
        let only = self.lanes().storages.len() == 1;
        let due = waiting::due_lanes(&self.pool).await?;
        for of in self.lanes().all() {
            if !due
                .iter()
                .any(|(s, lane)| *s == of.storage && *lane == of.lane)
            {
                continue;
            }
            let _turn = self.admitting.lock().await;
            let room = self.room(&of.storage, of.lane).await?;
            if room == 0 {
                continue;
            }
            // claimed in batches: a pass after a long outage must not push tens of
            // thousands in one command (see docs/apalis-redis-1.0.md on bulk pushes)
            let storage = (!only).then_some(of.storage.as_str());
            let claimed = waiting::claim_due(
                &self.pool,
                storage,
                of.lane,
                room.min(DISPATCH_BATCH) as i64,
            )
            .await?;
            delivered += self.deliver_claimed(of.lane, claimed).await? as u64;
        }
        Ok(delivered)
    }
}

/// How long a request waits for Redis to take its delivery before it answers that the
/// job waits for the queue: the job is recorded either way, and a request must answer
/// in seconds while Redis is down or frozen.
pub const PROMPT: Duration = Duration::from_millis(500);

/// Most deliveries one pass pushes per lane.
const DISPATCH_BATCH: u64 = 1000;

/// Runs the dispatcher until `shutdown`: each `interval`, whichever process holds the
/// dispatcher's lease delivers waiting jobs. Redis or Postgres being away pauses it; it
/// resumes on its own and says so once.
pub async fn dispatch_loop(job_service: Jobs, interval: Duration, shutdown: CancellationToken) {
    let leases = Leases::new(job_service.redis.clone(), &job_service.namespace);
    let key = format!("{}:dispatcher", job_service.namespace);
    // long enough to survive a slow pass, short enough that another process takes over
    // within seconds of this one's death
    let ttl = (interval * 10).max(Duration::from_secs(2));
    let mut lease: Option<Lease> = None;
    let mut failing = false;
    loop {
        lease = hold(&leases, &key, ttl, lease).await;
        if lease.is_some() {
            match job_service.dispatch().await {
                Ok(n) => {
                    if failing {
                        info!("dispatcher delivering again");
                        failing = false;
                    }
                    if n > 0 {
                        debug!(delivered = n, "waiting jobs delivered");
                    }
                }
                Err(e) => {
                    metrics::counter!("stasis_queue_dispatch_errors_total").increment(1);
                    if !failing {
                        warn!(error = %e, "dispatcher paused: jobs wait in Postgres until it can deliver");
                        failing = true;
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => break,
        }
    }
    if let Some(lease) = lease {
        let _ = leases.release(&lease).await;
    }
}

async fn hold(leases: &Leases, key: &str, ttl: Duration, held: Option<Lease>) -> Option<Lease> {
    match held {
        Some(lease) => match leases.renew(&lease, ttl).await {
            Ok(Renewal::Renewed | Renewal::Reclaimed) => Some(lease),
            Ok(Renewal::Lost) | Err(_) => None,
        },
        None => leases.try_acquire(key, ttl, 0).await.ok().flatten(),
    }
}
