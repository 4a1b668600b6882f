//! The backing services and where things live: Postgres (`database.*`), Redis
//! (`redis.*`), the queue in it (`queue.*`) and the mirrors on disk (`storage.*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// Longest wait for a pooled connection. While Postgres is down every request
    /// waits this long before its 503, so it stays short.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/stasis".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_millis(1500),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// apalis-redis's own `connect()` uses 500 ms, which fails large pipelined pushes
    /// after Redis already applied them; a retry would then duplicate work.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            response_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Prefix of every Redis key this stack writes.
    pub namespace: String,
    /// Worker liveness beat; a worker silent for `heartbeat_interval * missed_heartbeats`
    /// has its in-flight jobs handed to another worker.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub missed_heartbeats: u32,
    /// How often an idle worker asks Redis for work (apalis otherwise waits a heartbeat).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Upper bound on jobs waiting in Redis; the scheduler pushes in waves below it,
    /// because apalis-redis 1.0 fails every fetch once ~8,000 ids are due at once.
    pub max_backlog: u64,
    /// Dead deliveries kept in Redis per lane (newest first) for operators to inspect;
    /// older ones are removed with their payloads. Their jobs stay in Postgres.
    pub max_dead: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            namespace: "stasis".into(),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 2,
            poll_interval: Duration::from_millis(200),
            max_backlog: 4000,
            max_dead: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub root: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("./data/mirrors"),
        }
    }
}
