//! Syncing: mirrors and their schedule (`mirror.*`), the worker process (`worker.*`),
//! each sync attempt (`sync.*`) and the scheduler (`scheduler.*`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Shortest interval a mirror's owner or an operator may set.
    #[serde(with = "humantime_serde")]
    pub min_sync_interval: Duration,
    /// Longest a mirror's interval grows to while its upstream stays unchanged, and the
    /// cap of failure backoff.
    #[serde(with = "humantime_serde")]
    pub max_sync_interval: Duration,
    /// Consecutive failed syncs after which a mirror is `hard_failed` and no longer
    /// scheduled.
    pub hard_fail_after: u32,
    pub allow_local_network: bool,
    /// Largest a mirror may grow to on disk; a sync that would pass it fails (`too_large`).
    pub max_size: ByteSize,
    /// DNS server that resolves upstream host names, instead of the system resolver.
    pub dns_server: Option<SocketAddr>,
    /// Manual and webhook syncs of one mirror start at most once per this (0: no
    /// limit); requests within it share the pending job, deferred to its end.
    #[serde(with = "humantime_serde")]
    pub min_manual_interval: Duration,
    /// Repositories one user may own; imports beyond it are refused.
    pub max_per_user: u32,
    /// Upstream host → URL of its grokmirror manifest (gzipped JSON). The scheduler
    /// reads each once per tick and enqueues only the due mirrors of that host whose
    /// refs' fingerprint differs from the manifest's. In the environment:
    /// `STASIS_MIRROR_MANIFESTS=host=url,host2=url2`.
    #[serde(deserialize_with = "host_map")]
    pub manifests: BTreeMap<String, String>,
    /// Longest a manifest may stand in for a mirror's own ref listing: a due mirror
    /// last listed longer ago is synced whatever the manifest says.
    #[serde(with = "humantime_serde")]
    pub manifest_max_skip: Duration,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sync_interval: Duration::from_secs(3600),
            min_sync_interval: Duration::from_secs(60),
            max_sync_interval: Duration::from_secs(24 * 3600),
            hard_fail_after: 14,
            allow_local_network: false,
            max_size: ByteSize::gib(10),
            dns_server: None,
            min_manual_interval: Duration::from_secs(60),
            max_per_user: 1000,
            manifests: BTreeMap::new(),
            manifest_max_skip: Duration::from_secs(24 * 3600),
        }
    }
}

/// A map from YAML, or `host=url,host=url` from an environment variable (host names hold
/// dots, which figment's inline `{key=value}` maps read as nesting).
fn host_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    super::env::map_or_entries(d, |pair| match pair.split_once('=') {
        Some((host, url)) => Ok((host.trim().to_owned(), url.trim().to_owned())),
        None => Err(format!("`{pair}` is not host=url")),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// How long SIGTERM waits for in-flight syncs before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The storages this worker has mounted and serves; empty: every configured one.
    /// In the environment: `STASIS_WORKER_STORAGES=a,b`.
    #[serde(deserialize_with = "super::notify::list_or_csv")]
    pub storages: Vec<String>,
    /// Keep upstream HTTP(S) connections open between syncs, for the next check of a
    /// mirror on the same upstream (same vetted addresses, policy and credentials).
    pub reuse_connections: bool,
    /// How long a kept connection may sit idle before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Upstreams (host, port, addresses, credentials) whose connections are kept at
    /// once; the least recently used one is let go beyond it.
    pub max_pooled_hosts: u32,
}

impl WorkerConfig {
    /// The storages this worker serves, by name.
    pub fn served_storages(&self, storage: &super::StorageConfig) -> Vec<String> {
        if self.storages.is_empty() {
            storage.names()
        } else {
            self.storages.clone()
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            shutdown_grace: Duration::from_secs(60),
            storages: Vec::new(),
            reuse_connections: true,
            // below the 75 s nginx keeps an idle connection by default: an upstream
            // rarely closes one just as a check starts to use it
            idle_connection_timeout: Duration::from_secs(60),
            max_pooled_hosts: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Expiry of the per-repository lock; it is renewed every third of this while a
    /// fetch runs, so it only bounds how long a dead worker blocks its repository.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// Delay before a job that found its repository locked is tried again.
    #[serde(with = "humantime_serde")]
    pub lock_retry_delay: Duration,
    /// Syncs running at once across all workers (0: only `worker.concurrency` bounds them).
    pub max_concurrent: u32,
    /// Syncs from one upstream host at once across all workers (0: no cap): hosts
    /// rate-limit mirrors that burst.
    pub max_per_host: u32,
    /// Bytes an upstream's ref advertisement may take: it is held in memory whole.
    pub max_advertisement_size: ByteSize,
    /// Refs an upstream's advertisement may list.
    pub max_advertised_refs: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            max_attempts: 5,
            retry_base_delay: Duration::from_secs(10),
            retry_max_delay: Duration::from_secs(600),
            lock_ttl: Duration::from_secs(30),
            lock_retry_delay: Duration::from_secs(5),
            max_concurrent: 0,
            max_per_host: 16,
            max_advertisement_size: ByteSize::mib(32),
            max_advertised_refs: 200_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often the leader looks for due mirrors.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    pub batch_size: u32,
    /// Leadership lease; a stand-by takes over at most this long after the leader dies.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long a job may look running, pending or a mirror queued/syncing with nothing
    /// moving it before the reaper repairs it (lost deliveries, dead workers).
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(30),
            batch_size: 1000,
            lease_ttl: Duration::from_secs(15),
            stuck_after: Duration::from_secs(30 * 60),
        }
    }
}
