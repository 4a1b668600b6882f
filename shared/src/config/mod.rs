//! The one typed configuration: defaults, then an optional YAML file, then
//! `STASIS_<SECTION>_<KEY>` environment variables, secrets also from the file named by
//! `STASIS_<SECTION>_<KEY>_FILE` ([`Config::load`]). The sections
//! live by concern in the submodules, re-exported here; [`Config::validate`] checks
//! what serde cannot.

mod api;
mod env;
#[cfg(test)]
mod env_tests;
mod expose;
mod lfs;
mod life;
mod load;
mod notify;
mod redact;
mod secrets;
mod services;
mod storage;
mod sync;
mod telemetry;
mod validate;

use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, RateLimitConfig};
pub(crate) use env::unread_variables;
pub use env::SECRET_KEYS;
pub use lfs::LfsConfig;
pub use life::{HistoryConfig, HousekeepingConfig};
pub use notify::NotifyConfig;
/// The type of the configuration's secrets, and how code that needs one reads it.
pub use secrecy::{ExposeSecret, SecretString};
pub use secrets::SecretsConfig;
pub use services::{DatabaseConfig, QueueConfig, RedisConfig};
pub use storage::{
    valid_name as valid_storage_name, NamedStorage, Storage, StorageConfig, DEFAULT_STORAGE,
};
pub use sync::{MirrorConfig, SchedulerConfig, SyncConfig, WorkerConfig};
pub use telemetry::{LogConfig, MetricsConfig};

/// Environment variable naming the YAML file, when `--config` is not given.
pub const CONFIG_ENV: &str = "STASIS_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key `{key}`: {msg}")]
    Invalid { key: &'static str, msg: String },
    /// A `STASIS_*` variable that cannot be read; never carries a secret's value.
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
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
    pub lfs: LfsConfig,
}
