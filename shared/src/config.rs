//! The one typed configuration: defaults, then an optional YAML file, then
//! `STASIS_<SECTION>_<KEY>` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod life;
pub use life::{HistoryConfig, HousekeepingConfig};

/// Environment variable naming the YAML file, when `--config` is not given.
pub const CONFIG_ENV: &str = "STASIS_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key `{key}`: {msg}")]
    Invalid { key: &'static str, msg: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub queue: QueueConfig,
    pub storage: StorageConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub mirror: MirrorConfig,
    pub worker: WorkerConfig,
    pub sync: SyncConfig,
    pub scheduler: SchedulerConfig,
    pub log: LogConfig,
    pub secrets: SecretsConfig,
    pub notify: NotifyConfig,
    pub ratelimit: RateLimitConfig,
    pub housekeeping: HousekeepingConfig,
    pub history: HistoryConfig,
}

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
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            namespace: "stasis".into(),
            heartbeat_interval: Duration::from_secs(5),
            missed_heartbeats: 2,
            poll_interval: Duration::from_millis(200),
            max_backlog: 4000,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// A request still unanswered after this gets a 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A client that has not sent its whole request head by then is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Requests handled at once; past it, 503 at once rather than an unbounded queue.
    pub max_concurrent_requests: usize,
    /// Largest request body any route accepts.
    pub max_body_size: ByteSize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            max_body_size: ByteSize::mib(2),
        }
    }
}

/// Per-client request budgets (token bucket: `*_per_second` refill, `*_burst` size),
/// keyed by bearer token when one is sent, else by peer address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub read_per_second: u32,
    pub read_burst: u32,
    pub write_per_second: u32,
    pub write_burst: u32,
    pub import_per_second: u32,
    pub import_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            read_per_second: 100,
            read_burst: 400,
            write_per_second: 20,
            write_burst: 100,
            import_per_second: 2,
            import_burst: 50,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; unset means no exporter.
    pub listen: Option<SocketAddr>,
}

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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// How long SIGTERM waits for in-flight syncs before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            shutdown_grace: Duration::from_secs(60),
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,stasis_worker=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// `secrets.key` (`STASIS_SECRETS_KEY`): 32 bytes, hex or base64, sealing upstream
/// credentials at rest. Required once any mirror URL carries credentials.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub key: Option<String>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.key.as_ref().map(|_| "***");
        f.debug_struct("SecretsConfig")
            .field("key", &shown)
            .finish()
    }
}

/// Failure notifications: signed JSON events POSTed with retries.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers of every mirror's events: a list, or comma-separated in
    /// `STASIS_NOTIFY_URLS`.
    #[serde(deserialize_with = "list_or_csv")]
    pub urls: Vec<String>,
    /// Key of the `X-Stasis-Signature` HMAC-SHA256 over the body; unset: unsigned.
    pub secret: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deliveries tried per event and receiver before giving up.
    pub max_attempts: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| crate::git::url::redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(urls) => urls,
        ListOrCsv::Csv(text) => text
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Config {
    /// Loads defaults, the file (explicit path, else `$STASIS_CONFIG`), then the process
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let path = path.map(Path::to_path_buf).or(env_path);
        Self::from_figment(Self::figment(path.as_deref())?)
    }

    fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Yaml::file(path));
        }
        Ok(figment.merge(Self::env()))
    }

    /// `STASIS_MIRROR_SYNC_INTERVAL` → `mirror.sync_interval`: only the first `_` after
    /// the prefix separates section from key, since keys contain underscores themselves.
    fn env() -> Env {
        // the scripts' and tests' own variables, not configuration
        Env::prefixed("STASIS_")
            .ignore(&[
                "CONFIG",
                "LOCAL_SERVICES",
                "PG_ADMIN_URL",
                "TEST_DATABASE_URL",
                "TEST_REDIS_URL",
            ])
            .map(|key| key.as_str().replacen('_', ".", 1).into())
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            let msg = e
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            ConfigError::Load(msg)
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, msg: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                msg: msg.into(),
            })
        }
        let ns = &self.queue.namespace;
        if ns.is_empty()
            || ns
                .chars()
                .any(|c| c.is_whitespace() || c == '{' || c == '}')
        {
            return invalid(
                "queue.namespace",
                "must be non-empty without spaces or braces",
            );
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.sync.max_attempts == 0 {
            return invalid("sync.max_attempts", "must be at least 1");
        }
        if self.sync.timeout.is_zero() {
            return invalid("sync.timeout", "must be more than zero");
        }
        if self.mirror.sync_interval < Duration::from_secs(1) {
            return invalid("mirror.sync_interval", "must be at least 1s");
        }
        if self.mirror.max_sync_interval < self.mirror.sync_interval {
            return invalid(
                "mirror.max_sync_interval",
                "must be at least mirror.sync_interval",
            );
        }
        if self.mirror.hard_fail_after == 0 {
            return invalid("mirror.hard_fail_after", "must be at least 1");
        }
        if self.mirror.min_sync_interval.is_zero() {
            return invalid("mirror.min_sync_interval", "must be more than zero");
        }
        if self.sync.lock_ttl < Duration::from_secs(1) {
            return invalid("sync.lock_ttl", "must be at least 1s");
        }
        if self.scheduler.batch_size == 0 {
            return invalid("scheduler.batch_size", "must be at least 1");
        }
        if self.notify.max_attempts == 0 {
            return invalid("notify.max_attempts", "must be at least 1");
        }
        for url in &self.notify.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid("notify.urls", "each must be an http(s) URL");
            }
        }
        if self.scheduler.stuck_after.is_zero() {
            return invalid("scheduler.stuck_after", "must be more than zero");
        }
        if self.scheduler.tick.is_zero() {
            return invalid("scheduler.tick", "must be more than zero");
        }
        if self.queue.heartbeat_interval.is_zero() || self.queue.missed_heartbeats == 0 {
            return invalid(
                "queue.heartbeat_interval",
                "heartbeat interval and missed_heartbeats must be more than zero",
            );
        }
        if self.queue.max_backlog == 0 || self.queue.max_backlog > 7000 {
            return invalid(
                "queue.max_backlog",
                "must be between 1 and 7000 (apalis-redis fails above ~8000 due jobs)",
            );
        }
        let rl = &self.ratelimit;
        if [
            rl.read_per_second,
            rl.read_burst,
            rl.write_per_second,
            rl.write_burst,
        ]
        .into_iter()
        .chain([rl.import_per_second, rl.import_burst])
        .any(|n| n == 0)
        {
            return invalid("ratelimit", "rates and bursts must be at least 1");
        }
        if self.api.max_concurrent_requests == 0
            || self.api.request_timeout.is_zero()
            || self.api.header_read_timeout.is_zero()
        {
            return invalid(
                "api.max_concurrent_requests",
                "concurrency, request_timeout and header_read_timeout must be more than zero",
            );
        }
        life::validate(&self.housekeeping, &self.history)?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be `text` or `json`");
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail) -> Result<Config, ConfigError> {
        let path = jail.directory().join("stasis.yaml");
        Config::from_figment(Config::figment(path.is_file().then_some(path.as_path()))?)
    }

    #[test]
    fn file_then_env_with_durations() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "stasis.yaml",
                "mirror:\n  sync_interval: 30m\nworker:\n  concurrency: 8\n",
            )?;
            jail.set_env("STASIS_MIRROR_SYNC_INTERVAL", "2h");
            jail.set_env("STASIS_SYNC_MAX_ATTEMPTS", "7");
            jail.set_env("STASIS_QUEUE_NAMESPACE", "ci_1");
            let cfg = load_in(jail).expect("valid config");
            assert_eq!(cfg.mirror.sync_interval, Duration::from_secs(7200));
            assert_eq!(cfg.worker.concurrency, 8);
            assert_eq!(cfg.sync.max_attempts, 7);
            assert_eq!(cfg.queue.namespace, "ci_1");
            assert!(cfg.mirror.enabled);
            assert_eq!(cfg.api.listen.to_string(), "127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn bad_duration_names_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_MIRROR_SYNC_INTERVAL", "soon");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("mirror.sync_interval"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_and_invalid_value_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("stasis.yaml", "mirror:\n  sync_intervall: 1h\n")?;
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("sync_intervall"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_WORKER_CONCURRENCY", "0");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("worker.concurrency"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn abuse_limits_from_env() {
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_MIRROR_MIN_MANUAL_INTERVAL", "0s");
            jail.set_env("STASIS_RATELIMIT_WRITE_BURST", "5");
            jail.set_env("STASIS_API_REQUEST_TIMEOUT", "2s");
            let cfg = load_in(jail).expect("valid config");
            assert!(cfg.mirror.min_manual_interval.is_zero());
            assert_eq!(cfg.ratelimit.write_burst, 5);
            assert_eq!(cfg.api.request_timeout, Duration::from_secs(2));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_RATELIMIT_IMPORT_PER_SECOND", "0");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("ratelimit"), "{err}");
            Ok(())
        });
    }
}
