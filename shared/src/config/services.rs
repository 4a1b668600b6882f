//! The backing services and where things live: Postgres (`database.*`), Redis
//! (`redis.*`), and the queue in it (`queue.*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `Debug` hides the URL's password (redact.rs).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// Longest wait for a pooled connection, opening one included. While Postgres is
    /// down or hung every request waits this long before its 503, so it stays short.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Postgres cancels any statement of ours running longer (`statement_timeout`, set
    /// on every connection): a statement stuck behind a lock or a saturated server
    /// fails instead of holding its connection and its caller.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/stasis".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_millis(1500),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// `Debug` hides the URL's password (redact.rs).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// Longest wait for the answer to one command: how soon a hung Redis (a frozen
    /// process, a stuck failover) fails a call. apalis-redis's own `connect()` uses
    /// 500 ms, which failed a pipelined push of 50,000 jobs after Redis had applied it;
    /// our pushes stay far smaller (`queue.max_backlog` waves, one job per request).
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Longest wait for one connection attempt (TCP and handshake).
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// Further connection attempts after a failed one before a waiting command fails
    /// (50-200 ms apart); the next command starts a new series.
    pub reconnect_attempts: u32,
    /// PEM file of the CA certificate(s) a `rediss://` server's certificate must chain
    /// to, instead of the system's trust store (a managed Redis's own CA).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and its key, for a Redis that checks clients'
    /// certificates (`tls-auth-clients yes`). Both or neither.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            reconnect_attempts: 1,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
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
    /// Upper bound on deliveries waiting in the scheduled lane; the scheduler pushes in
    /// waves below it, because apalis-redis 1.0 fails every fetch once ~8,000 ids are
    /// due at once.
    pub max_backlog: u64,
    /// Upper bound on deliveries waiting in the priority lane (imports, "Sync now",
    /// webhooks, retries). Kept small: the lane is first come, first served, so what
    /// waits in it stands in front of every owner's next request; the rest waits in
    /// Postgres and is admitted fairly across owners as room appears.
    pub max_priority_backlog: u64,
    /// How often the dispatcher delivers waiting jobs (due retries, postponed
    /// deliveries, overflow) into their lanes.
    #[serde(with = "humantime_serde")]
    pub dispatch_interval: Duration,
    /// Dead deliveries kept in Redis per lane (newest first) for operators to inspect;
    /// older ones are removed with their payloads. Their jobs stay in Postgres.
    pub max_dead: u64,
}

impl QueueConfig {
    /// How long a worker may be silent before it counts as gone: its liveness key
    /// expires, its leases and slots may be taken over, its deliveries handed on.
    pub fn liveness_window(&self) -> Duration {
        self.heartbeat_interval * self.missed_heartbeats
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            namespace: "stasis".into(),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 2,
            poll_interval: Duration::from_millis(200),
            max_backlog: 4000,
            max_priority_backlog: 100,
            dispatch_interval: Duration::from_millis(200),
            max_dead: 1000,
        }
    }
}
