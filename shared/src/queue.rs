//! The job queue: apalis-redis configured around its 1.0 sharp edges, with Postgres as
//! the record of which jobs exist (dedup, state, history).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::{QueueConfig, RedisConfig};
use crate::db::jobs;
use crate::domain::{SyncMirror, SyncReason};
use crate::error::{Error, Result};

pub type JobStorage = RedisStorage<SyncMirror>;

/// Our own connection: apalis-redis's `connect()` times out responses after 500 ms.
pub async fn connect_redis(cfg: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(cfg.response_timeout))
        .set_connection_timeout(Some(cfg.connection_timeout))
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, manager).await
}

pub fn queue_name(namespace: &str) -> String {
    format!("{namespace}:sync")
}

/// Workers consume raw JSON and decode `SyncMirror` themselves: a payload apalis fails
/// to decode kills the consumer and comes back to kill the next one (a poison job).
pub type ConsumerStorage = RedisStorage<serde_json::Value>;

/// `batch_size` is how many jobs one fetch takes into a worker's in-flight set: keep it
/// at the worker's concurrency so a dead worker strands no more than it was running.
pub fn storage<T>(
    conn: ConnectionManager,
    cfg: &QueueConfig,
    batch_size: usize,
) -> RedisStorage<T> {
    let config = apalis_redis::Config::default()
        .queue(queue_name(&cfg.namespace))
        .heartbeat_interval(cfg.heartbeat_interval)
        .missed_heartbeats(cfg.missed_heartbeats as usize)
        // the default takes an O(backlog) LREM per job
        .lock_tasks(false)
        .batch_size(batch_size.max(1));
    RedisStorage::new(conn).with_config(config)
}

/// Jobs sitting in Redis: due or delayed (`scheduled`) plus ready (`active`).
pub async fn backlog(conn: &ConnectionManager, namespace: &str) -> redis::RedisResult<u64> {
    let q = queue_name(namespace);
    let (scheduled, active): (u64, u64) = redis::pipe()
        .zcard(format!("{q}:scheduled"))
        .llen(format!("{q}:active"))
        .query_async(&mut conn.clone())
        .await?;
    Ok(scheduled + active)
}

/// What the caller gets back from [`Enqueuer::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: Uuid,
    /// `false` when the repository already had a pending or running job.
    pub created: bool,
}

#[derive(Clone)]
pub struct Enqueuer {
    pool: PgPool,
    storage: JobStorage,
    max_attempts: i32,
}

impl Enqueuer {
    pub fn new(pool: PgPool, storage: JobStorage, max_attempts: u32) -> Self {
        Self {
            pool,
            storage,
            max_attempts: max_attempts as i32,
        }
    }

    pub fn storage(&self) -> &JobStorage {
        &self.storage
    }

    /// Records a job for the repository and pushes it, unless one is already pending
    /// or running, in which case that job is returned. `None`: no such repository.
    pub async fn enqueue(&self, repo_id: Uuid, reason: SyncReason) -> Result<Option<Enqueued>> {
        let mut tx = self.pool.begin().await?;
        let Some(claimed) = jobs::claim(&mut tx, repo_id, reason, self.max_attempts).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        if claimed.created {
            let job = SyncMirror {
                job_id: claimed.job_id,
                repo_id,
                reason,
            };
            if let Err(e) = self.push(vec![job]).await {
                jobs::unclaim(&self.pool, &[claimed.job_id]).await?;
                return Err(e);
            }
            metrics::counter!("stasis_jobs_enqueued_total", "reason" => reason.as_str())
                .increment(1);
        } else {
            metrics::counter!("stasis_jobs_deduplicated_total").increment(1);
        }
        Ok(Some(Enqueued {
            job_id: claimed.job_id,
            created: claimed.created,
        }))
    }

    /// Pushes deliveries for jobs already recorded in Postgres, in one round trip.
    pub async fn push(&self, jobs: Vec<SyncMirror>) -> Result<()> {
        self.storage
            .clone()
            .push_bulk(jobs)
            .await
            .map_err(|e| Error::Push(e.to_string()))
    }

    /// Pushes a delivery that becomes due after `delay` (retry backoff, lock contention).
    pub async fn push_delayed(&self, job: SyncMirror, delay: Duration) -> Result<()> {
        self.storage
            .clone()
            .push_task(
                TaskBuilder::new(job)
                    .run_at_timestamp(due_second(delay))
                    .build(),
            )
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
