//! The Redis transport of deliveries: apalis-redis configured around its 1.0 sharp edges
//! (its lanes, the connection, what Redis holds, the delivery epoch, the reclaiming of
//! finished deliveries). Which jobs exist and when they run is Postgres's record; the job
//! service ([`crate::jobs`]) is what opens them and admits them here.

use apalis_redis::RedisStorage;
use redis::aio::ConnectionManager;

use crate::config::{Config, QueueConfig, DEFAULT_STORAGE};
use crate::domain::{Lane, SyncMirror};

mod census;
mod connection;
mod dead;
mod epoch;
pub mod reclaim;

pub use census::{
    backlog, dead_deliveries, delivered_jobs, lane_depths, redis_depth, DeadDelivery, RedisDepth,
};
pub use connection::{client as redis_client, connect_redis, once_more, ping, Retryable};
pub use dead::purge_dead;
pub use epoch::{mark, marked, EpochWatch, Lost};

pub type JobStorage = RedisStorage<SyncMirror>;

/// The apalis queue of a storage's lane; every key of it starts with this. The storage
/// `default` keeps the names lanes had before storages were named, so an upgrade finds
/// its deliveries where they were.
pub fn queue_name(namespace: &str, storage: &str, lane: Lane) -> String {
    if storage == DEFAULT_STORAGE {
        format!("{namespace}:{}", lane.suffix())
    } else {
        format!("{namespace}:storage:{storage}:{}", lane.suffix())
    }
}

/// Every Redis lane of an installation: a priority and a scheduled lane per storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes {
    pub namespace: String,
    pub storages: Vec<String>,
}

/// One lane of one storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneOf {
    pub storage: String,
    pub lane: Lane,
    /// Its queue name.
    pub queue: String,
}

impl Lanes {
    pub fn new(namespace: &str, storages: Vec<String>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            storages,
        }
    }

    /// The lanes of every configured storage.
    pub fn of(cfg: &Config) -> Self {
        Self::new(&cfg.queue.namespace, cfg.storage.names())
    }

    pub fn queue(&self, storage: &str, lane: Lane) -> String {
        queue_name(&self.namespace, storage, lane)
    }

    pub fn all(&self) -> Vec<LaneOf> {
        self.storages
            .iter()
            .flat_map(|storage| {
                Lane::ALL.into_iter().map(move |lane| LaneOf {
                    storage: storage.clone(),
                    lane,
                    queue: queue_name(&self.namespace, storage, lane),
                })
            })
            .collect()
    }
}

/// Workers consume raw JSON and decode `SyncMirror` themselves: a payload apalis fails
/// to decode kills the consumer and comes back to kill the next one (a poison job).
pub type ConsumerStorage = RedisStorage<serde_json::Value>;

/// `batch_size` is how many jobs one fetch takes into a worker's in-flight set: keep it
/// at the worker's concurrency so a dead worker strands no more than it was running.
pub fn storage<T>(
    conn: ConnectionManager,
    cfg: &QueueConfig,
    storage: &str,
    lane: Lane,
    batch_size: usize,
) -> RedisStorage<T> {
    let config = apalis_redis::Config::default()
        .queue(queue_name(&cfg.namespace, storage, lane))
        .heartbeat_interval(cfg.heartbeat_interval)
        .missed_heartbeats(cfg.missed_heartbeats as usize)
        // the default takes an O(backlog) LREM per job
        .lock_tasks(false)
        .batch_size(batch_size.max(1));
    RedisStorage::new(conn).with_config(config)
}
