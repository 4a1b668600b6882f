//! Loading: defaults, then the YAML file, then the environment, then validation.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;

use super::{Config, ConfigError, CONFIG_ENV};

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
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use figment::Jail;

    use super::*;

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
    fn backend_bounds_from_env() {
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_DATABASE_STATEMENT_TIMEOUT", "5s");
            jail.set_env("STASIS_REDIS_RESPONSE_TIMEOUT", "2s");
            jail.set_env("STASIS_REDIS_RECONNECT_ATTEMPTS", "3");
            jail.set_env("STASIS_API_UNAVAILABLE_AFTER", "800ms");
            let cfg = load_in(jail).expect("valid config");
            assert_eq!(cfg.database.statement_timeout, Duration::from_secs(5));
            assert_eq!(cfg.redis.response_timeout, Duration::from_secs(2));
            assert_eq!(cfg.redis.reconnect_attempts, 3);
            assert_eq!(cfg.api.unavailable_after, Duration::from_millis(800));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_REDIS_RESPONSE_TIMEOUT", "0s");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("redis.response_timeout"), "{err}");
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
    fn dead_deliveries_kept_from_env_and_never_none() {
        Jail::expect_with(|jail| {
            assert_eq!(load_in(jail).expect("defaults").queue.max_dead, 1000);
            jail.set_env("STASIS_QUEUE_MAX_DEAD", "50");
            assert_eq!(load_in(jail).expect("valid config").queue.max_dead, 50);
            jail.set_env("STASIS_QUEUE_MAX_DEAD", "0");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("queue.max_dead"), "{err}");
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

    #[test]
    fn lfs_limits_from_env() {
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_LFS_MAX_OBJECT_SIZE", "100MiB");
            jail.set_env("STASIS_LFS_TIMEOUT", "5m");
            jail.set_env("STASIS_LFS_ENABLED", "false");
            let cfg = load_in(jail).expect("valid config");
            assert_eq!(cfg.lfs.max_object_size, bytesize::ByteSize::mib(100));
            assert_eq!(cfg.lfs.timeout, Duration::from_secs(300));
            assert!(!cfg.lfs.enabled);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_LFS_CONCURRENCY", "0");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("lfs.concurrency"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("STASIS_LFS_RETRY_BASE_DELAY", "50ms");
            let cfg = load_in(jail).expect("valid config");
            assert_eq!(cfg.lfs.retry_base_delay, Duration::from_millis(50));
            jail.set_env("STASIS_LFS_RETRY_MAX_DELAY", "10ms");
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("lfs.retry_base_delay"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn manifests_from_file_and_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "stasis.yaml",
                "mirror:\n  manifests:\n    git.kernel.org: https://git.kernel.org/manifest.js.gz\n",
            )?;
            jail.set_env("STASIS_MIRROR_MANIFEST_MAX_SKIP", "12h");
            let cfg = load_in(jail).expect("valid config");
            assert_eq!(
                cfg.mirror
                    .manifests
                    .get("git.kernel.org")
                    .map(String::as_str),
                Some("https://git.kernel.org/manifest.js.gz")
            );
            assert_eq!(cfg.mirror.manifest_max_skip, Duration::from_secs(12 * 3600));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env(
                "STASIS_MIRROR_MANIFESTS",
                "{example.com=\"ftp://example.com/m\"}",
            );
            let err = load_in(jail).unwrap_err().to_string();
            assert!(err.contains("mirror.manifests"), "{err}");
            Ok(())
        });
    }
}
