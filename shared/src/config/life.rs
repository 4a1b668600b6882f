//! Life over time: mirror housekeeping (`housekeeping.*`) and bounded history
//! (`history.*`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HousekeepingConfig {
    /// Repacking after syncs that wrote: without it a mirror grows a pack per change and
    /// every later fetch and clone slows down.
    pub enabled: bool,
    /// Bound on one housekeeping run; a slower one is killed and the sync stands.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A full repack (unreachable objects pruned) once the last one is this old.
    #[serde(with = "humantime_serde")]
    pub full_repack_interval: Duration,
    /// ... or after this many geometric repacks since the last full one (0: by age only).
    pub full_repack_every: u32,
    /// Unreachable objects younger than this survive a full repack: a clone being served
    /// may still need them.
    #[serde(with = "humantime_serde")]
    pub prune_grace: Duration,
    /// A pass that failed is run again by the first sync after this (one that fetched
    /// nothing too), doubled after each further failure up to `retry_max_delay`.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(600),
            full_repack_interval: Duration::from_secs(7 * 24 * 3600),
            full_repack_every: 0,
            prune_grace: Duration::from_secs(14 * 24 * 3600),
            retry_base_delay: Duration::from_secs(600),
            retry_max_delay: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Runs kept per mirror (its last failed run is always among them).
    pub max_runs_per_mirror: u32,
    /// Runs, finished jobs and delivered notifications older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            max_runs_per_mirror: 1000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

pub(super) fn validate(
    housekeeping: &HousekeepingConfig,
    history: &HistoryConfig,
) -> Result<(), ConfigError> {
    let invalid = |key, msg: &str| {
        Err(ConfigError::Invalid {
            key,
            msg: msg.into(),
        })
    };
    if housekeeping.timeout.is_zero() {
        return invalid("housekeeping.timeout", "must be more than zero");
    }
    if housekeeping.retry_base_delay > housekeeping.retry_max_delay {
        return invalid(
            "housekeeping.retry_base_delay",
            "must not be more than housekeeping.retry_max_delay",
        );
    }
    if history.max_runs_per_mirror == 0 {
        return invalid("history.max_runs_per_mirror", "must be at least 1");
    }
    if history.max_age.is_zero() {
        return invalid("history.max_age", "must be more than zero");
    }
    Ok(())
}
