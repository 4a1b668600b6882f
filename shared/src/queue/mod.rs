//! The Redis transport of deliveries: apalis-redis configured around its 1.0 sharp edges
//! (its lanes, the connection, what Redis holds, the delivery epoch, the reclaiming of
//! finished deliveries). Which jobs exist and when they run is Postgres's record; the job
//! service ([`crate::jobs`]) is what opens them and admits them here.

use apalis_redis::RedisStorage;
use redis::aio::ConnectionManager;

use crate::config::QueueConfig;
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
