//! The job queue: apalis-redis configured around its 1.0 sharp edges, with Postgres as
//! the record of which jobs exist (dedup, state, history).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::QueueConfig;
use crate::db::coalesce;
pub use crate::db::coalesce::Window;
use crate::db::jobs;
use crate::db::recovery;
use crate::domain::{JobState, Lane, SyncMirror, SyncReason};
use crate::error::{Error, Result};
use crate::lifecycle::enqueue::{self, Opened};
use crate::lifecycle::operator::{self, Refused};

mod census;
mod connection;
mod epoch;
pub mod reclaim;

pub use census::{
    backlog, dead_deliveries, delivered_jobs, lane_depths, redis_depth, DeadDelivery, RedisDepth,
};
pub use connection::{connect_redis, keep_connected, once_more};
pub use epoch::{mark, marked, EpochWatch, Lost};

pub type JobStorage = RedisStorage<SyncMirror>;

/// The apalis queue of a lane; every key of it starts with this.
pub fn queue_name(namespace: &str, lane: Lane) -> String {
    format!("{namespace}:{}", lane.suffix())
}

/// Workers consume raw JSON and decode `SyncMirror` themselves: a payload apalis fails
/// to decode kills the consumer and comes back to kill the next one (a poison job).
pub type ConsumerStorage = RedisStorage<serde_json::Value>;

/// `batch_size` is how many jobs one fetch takes into a worker's in-flight set: keep it
/// at the worker's concurrency so a dead worker strands no more than it was running.
pub fn storage<T>(
    conn: ConnectionManager,
    cfg: &QueueConfig,
    lane: Lane,
    batch_size: usize,
) -> RedisStorage<T> {
    let config = apalis_redis::Config::default()
        .queue(queue_name(&cfg.namespace, lane))
        .heartbeat_interval(cfg.heartbeat_interval)
        .missed_heartbeats(cfg.missed_heartbeats as usize)
        // the default takes an O(backlog) LREM per job
        .lock_tasks(false)
        .batch_size(batch_size.max(1));
    RedisStorage::new(conn).with_config(config)
}

/// Removes every waiting delivery of one job (its payload names the job id) from the
/// scheduled set and the active list, with its data, in one atomic step: an id left in
/// a list without its data would poison the next fetch. O(backlog), which
/// `queue.max_backlog` bounds; it runs only on an operator's discard.
const DROP_DELIVERIES: &str = r#"
local removed = 0
local function forget(id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('DEL', KEYS[4] .. ':' .. id)
  removed = removed + 1
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local data = redis.call('HGET', KEYS[3], id)
  if data and string.find(data, ARGV[1], 1, true) then
    redis.call('ZREM', KEYS[1], id)
    forget(id)
  end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local data = redis.call('HGET', KEYS[3], id)
  if data and string.find(data, ARGV[1], 1, true) then
    redis.call('LREM', KEYS[2], 0, id)
    forget(id)
  end
end
return removed
"#;

/// What the caller gets back from [`Enqueuer::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: Uuid,
    /// `false` when the repository already had a pending or running job.
    pub created: bool,
    /// When the job is due: later than now when it waits out `min_manual_interval`.
    pub run_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone)]
pub struct Enqueuer {
    pool: PgPool,
    redis: ConnectionManager,
    namespace: String,
    priority: JobStorage,
    scheduled: JobStorage,
    max_attempts: i32,
}

impl Enqueuer {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        cfg: &QueueConfig,
        max_attempts: u32,
    ) -> Self {
        Self {
            pool,
            priority: storage(redis.clone(), cfg, Lane::Priority, 1),
            scheduled: storage(redis.clone(), cfg, Lane::Scheduled, 1),
            redis,
            namespace: cfg.namespace.clone(),
            max_attempts: max_attempts as i32,
        }
    }

    /// The queue deliveries of `lane` are pushed to.
    pub fn storage(&self, lane: Lane) -> &JobStorage {
        match lane {
            Lane::Priority => &self.priority,
            Lane::Scheduled => &self.scheduled,
        }
    }

    /// Records a job for the repository and pushes it, unless one is already pending
    /// or running, in which case that job is returned. `None`: no such repository.
    pub async fn enqueue(&self, repo_id: Uuid, reason: SyncReason) -> Result<Option<Enqueued>> {
        self.enqueue_within(repo_id, reason, Window::None).await
    }

    /// [`Self::enqueue`], coalesced per `window`.
    pub async fn enqueue_within(
        &self,
        repo_id: Uuid,
        reason: SyncReason,
        window: Window,
    ) -> Result<Option<Enqueued>> {
        // Most requests for a busy repository find its job already there: one read answers
        // them, without the row lock that serialises creating a job (and that every
        // "Sync now" of a hot repository would otherwise queue on).
        if let Some(active) = coalesce::active(&self.pool, repo_id).await? {
            let job_id = active.id;
            if active.undelivered || (active.pending && self.redis_lost_data().await?) {
                self.redeliver(job_id, repo_id, reason, active.run_at)
                    .await?;
            }
            let run_at = self
                .forced(window, job_id, repo_id, reason, active.run_at)
                .await?;
            metrics::counter!("stasis_jobs_deduplicated_total").increment(1);
            return Ok(Some(Enqueued {
                job_id,
                created: false,
                run_at,
            }));
        }
        let mut tx = self.pool.begin().await?;
        let Some(opened) = enqueue::open(&mut tx, repo_id, reason, self.max_attempts).await? else {
            return Ok(None);
        };
        let (job_id, created) = (opened.job_id(), matches!(opened, Opened::New(_)));
        let run_at = match (created, window) {
            (true, Window::Min(gap)) if !gap.is_zero() => {
                coalesce::defer(&mut tx, job_id, repo_id, gap).await?
            }
            (true, _) => chrono::Utc::now(),
            // a concurrent request created it between the read above and the lock
            (false, _) => coalesce::active(&mut *tx, repo_id)
                .await?
                .map_or_else(chrono::Utc::now, |active| active.run_at),
        };
        if created {
            // A Redis nobody marked yet (a new deployment) is marked before the job is
            // visible: a request finding the job must not take the missing marker for
            // lost data. If Redis is down, the push below fails and withdraws the job.
            if let Err(e) = mark(&self.redis, &self.namespace, true).await {
                tracing::debug!(error = %e, "could not mark the delivery epoch");
            }
        }
        tx.commit().await?;
        if created {
            let job = SyncMirror {
                job_id,
                repo_id,
                reason,
            };
            if let Err(e) = self.push_due_at(job, run_at).await {
                enqueue::withdraw(&self.pool, &[job_id]).await?;
                return Err(e);
            }
            metrics::counter!("stasis_jobs_enqueued_total", "reason" => reason.as_str())
                .increment(1);
        } else {
            metrics::counter!("stasis_jobs_deduplicated_total").increment(1);
        }
        Ok(Some(Enqueued {
            job_id,
            created,
            run_at,
        }))
    }

    /// Whether Redis lost its data since the last epoch was marked; if so a new epoch
    /// starts here (the scheduler leader re-delivers the rest of the pending jobs).
    async fn redis_lost_data(&self) -> Result<bool> {
        if marked(&self.redis, &self.namespace).await? {
            return Ok(false);
        }
        let epoch = recovery::next_epoch(&self.pool).await?;
        mark(&self.redis, &self.namespace, false).await?;
        tracing::warn!(epoch, "Redis lost data: a new delivery epoch starts");
        Ok(true)
    }

    /// A pending job whose delivery Redis may have lost gets a fresh one (once, however
    /// many requests find it at the same time).
    async fn redeliver(
        &self,
        job_id: Uuid,
        repo_id: Uuid,
        reason: SyncReason,
        run_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let Some(before) = recovery::take_redelivery(&self.pool, job_id).await? else {
            return Ok(());
        };
        let job = SyncMirror {
            job_id,
            repo_id,
            reason,
        };
        if let Err(e) = self.push_due_at(job, run_at).await {
            recovery::unmark_delivered(&self.pool, job_id, before).await?;
            return Err(e);
        }
        metrics::counter!("stasis_jobs_redelivered_total", "cause" => "request").increment(1);
        Ok(())
    }

    /// Under [`Window::Force`], a job waiting out its window is made due now with a
    /// delivery of its own (the deferred one finds it finished and is dropped).
    async fn forced(
        &self,
        window: Window,
        job_id: Uuid,
        repo_id: Uuid,
        reason: SyncReason,
        run_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<chrono::DateTime<chrono::Utc>> {
        if window != Window::Force || !coalesce::advance(&self.pool, job_id).await? {
            return Ok(run_at);
        }
        let job = SyncMirror {
            job_id,
            repo_id,
            reason,
        };
        self.push(vec![job]).await?;
        Ok(chrono::Utc::now())
    }

    /// An operator's retry of a failed or dead job: back to pending in Postgres with a
    /// fresh allowance of attempts, and a new delivery in Redis.
    pub async fn retry(&self, job_id: Uuid) -> Result<Result<(), Refused>> {
        let previous = match operator::retry(&self.pool, job_id, self.max_attempts).await? {
            Ok(state) => state,
            Err(refused) => return Ok(Err(refused)),
        };
        let pushed = match jobs::find(&self.pool, job_id).await? {
            Some(job) => {
                let delivery = SyncMirror {
                    job_id,
                    repo_id: job.repo_id,
                    reason: job.reason,
                };
                self.push(vec![delivery]).await
            }
            // deleted with its repository meanwhile
            None => return Ok(Err(Refused::NotFound)),
        };
        if let Err(e) = pushed {
            operator::restore(&self.pool, job_id, previous).await?;
            return Err(e);
        }
        metrics::counter!("stasis_jobs_retried_total").increment(1);
        Ok(Ok(()))
    }

    /// An operator's discard: the job becomes `dead` in Postgres (so any delivery still
    /// in flight is dropped by the worker) and its waiting deliveries leave Redis.
    /// Returns the state it had and how many deliveries were removed.
    pub async fn discard(&self, job_id: Uuid) -> Result<Result<(JobState, u64), Refused>> {
        let previous = match operator::discard(&self.pool, job_id).await? {
            Ok(state) => state,
            Err(refused) => return Ok(Err(refused)),
        };
        let removed = self.drop_deliveries(job_id).await?;
        metrics::counter!("stasis_jobs_discarded_total").increment(1);
        Ok(Ok((previous, removed)))
    }

    /// Removes the job's deliveries still waiting in Redis, in either lane; returns how
    /// many.
    pub async fn drop_deliveries(&self, job_id: Uuid) -> Result<u64> {
        let mut removed = 0;
        for lane in Lane::ALL {
            let mut storage = self.storage(lane).clone();
            let config = storage.get_config().clone();
            let n: u64 = redis::Script::new(DROP_DELIVERIES)
                .key(config.scheduled_jobs_set())
                .key(config.active_jobs_list())
                .key(config.job_data_hash())
                .key(config.job_meta_hash())
                .arg(job_id.to_string())
                .invoke_async(storage.get_connection())
                .await?;
            removed += n;
        }
        Ok(removed)
    }

    /// Pushes deliveries for jobs already recorded in Postgres, one round trip per lane.
    pub async fn push(&self, jobs: Vec<SyncMirror>) -> Result<()> {
        let (priority, scheduled): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|job| job.reason.lane() == Lane::Priority);
        for (lane, jobs) in [(Lane::Priority, priority), (Lane::Scheduled, scheduled)] {
            if jobs.is_empty() {
                continue;
            }
            let storage = self.storage(lane);
            once_more(|| {
                let (mut storage, jobs) = (storage.clone(), jobs.clone());
                async move { storage.push_bulk(jobs).await }
            })
            .await
            .map_err(|e| Error::Push(e.to_string()))?;
        }
        Ok(())
    }

    /// Pushes a delivery due at `run_at`: ready now if that has passed, delayed if not.
    pub async fn push_due_at(
        &self,
        job: SyncMirror,
        run_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        match (run_at - chrono::Utc::now()).to_std() {
            Ok(wait) if !wait.is_zero() => self.push_delayed(job, wait).await,
            _ => self.push(vec![job]).await,
        }
    }

    /// Pushes a delivery that becomes due after `delay` (retry backoff, lock contention).
    pub async fn push_delayed(&self, job: SyncMirror, delay: Duration) -> Result<()> {
        let storage = self.storage(job.reason.lane());
        let at = due_second(delay);
        once_more(|| {
            let (mut storage, job) = (storage.clone(), job.clone());
            async move {
                let task = TaskBuilder::new(job).run_at_timestamp(at).build();
                storage.push_task(task).await
            }
        })
        .await
        .map_err(|e| Error::Push(e.to_string()))
    }
}

/// apalis-redis schedules in whole seconds and `run_after` rounds down, which turns a
/// 1.5 s backoff into 0.5 s; round up instead so a delivery never comes early.
fn due_second(delay: Duration) -> u64 {
    let at = SystemTime::now() + delay;
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}
