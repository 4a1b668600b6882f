//! Git LFS objects of mirrors (`lfs.*`): downloaded after a sync that brought commits
//! whose pointers name objects the mirror does not hold; those that could not be stored
//! are tried again by later syncs, with backoff.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LfsConfig {
    /// Off: no mirror downloads LFS objects, whatever its own switch says.
    pub enabled: bool,
    /// Largest single object downloaded; a pointer naming a larger one is skipped and
    /// the run says so.
    pub max_object_size: ByteSize,
    /// Largest a mirror's LFS objects may grow to in all, on top of `mirror.max_size`.
    pub max_mirror_size: ByteSize,
    /// Downloads at once per sync.
    pub concurrency: usize,
    /// Bound on one sync's LFS step (scan, batch requests, downloads).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Wait before a later sync tries again an object a sync could not store, doubled
    /// after each further failure up to `retry_max_delay`.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
}

impl Default for LfsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_object_size: ByteSize::gib(2),
            max_mirror_size: ByteSize::gib(20),
            concurrency: 4,
            timeout: Duration::from_secs(1800),
            retry_base_delay: Duration::from_secs(60),
            retry_max_delay: Duration::from_secs(24 * 3600),
        }
    }
}

impl LfsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.concurrency) {
            return Err(ConfigError::Invalid {
                key: "lfs.concurrency",
                msg: "must be between 1 and 64".into(),
            });
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "lfs.timeout",
                msg: "must be more than 0s".into(),
            });
        }
        if self.retry_base_delay > self.retry_max_delay {
            return Err(ConfigError::Invalid {
                key: "lfs.retry_base_delay",
                msg: "must not be more than lfs.retry_max_delay".into(),
            });
        }
        Ok(())
    }
}
