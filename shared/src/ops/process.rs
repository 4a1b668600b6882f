//! Start-up and shutdown every binary shares: load the configuration, set up logs and
//! metrics, connect to Postgres (the record) and Redis (the queue); the binary then runs
//! its part until SIGTERM or Ctrl-C.

use std::path::Path;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result};

/// A process ready to run its part: its configuration and its connections.
pub struct Process {
    pub cfg: Config,
    pub pool: PgPool,
    pub redis: ConnectionManager,
}

/// Loads the configuration, sets up logs and metrics for `process` (`api`, `worker`,
/// `scheduler`) and connects to Postgres and Redis. Telemetry comes first so that a
/// backend that cannot be reached is logged as this process's failure.
pub async fn boot(process: &'static str, config: Option<&Path>) -> Result<Process> {
    let cfg = Config::load(config)?;
    crate::ops::telemetry::init(process, &cfg)?;
    let unread = crate::config::unread_variables();
    if !unread.is_empty() {
        tracing::warn!(
            variables = %unread.join(", "),
            "STASIS_* variables of no configuration section, ignored (a misspelt section?)"
        );
    }
    let pool = crate::db::connect(&cfg.database)
        .await
        .map_err(Error::ConnectPostgres)?;
    let redis = crate::queue::connect_redis(&cfg.redis)
        .await
        .map_err(Error::ConnectRedis)?;
    refuse_missing_storages(&cfg, &pool).await?;
    Ok(Process { cfg, pool, redis })
}

/// A storage that still holds mirrors cannot leave the configuration: their jobs would
/// go to lanes nobody serves, and their directories would be forgotten. Drain it first
/// (move its mirrors off), then remove it. A database not yet migrated to storages has
/// every mirror on `default`, which `storage.root` stands for; one not migrated at all
/// has none.
pub async fn refuse_missing_storages(cfg: &Config, pool: &PgPool) -> Result<()> {
    let names = cfg.storage.names();
    let in_use = match crate::db::storages::unknown_in_use(pool, &names).await {
        Ok(in_use) => in_use,
        // not migrated yet (no column, or no table at all): nothing is on a storage
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42703" | "42P01")) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    if in_use.is_empty() {
        return Ok(());
    }
    let listed = in_use
        .iter()
        .map(|(name, n)| format!("`{name}` ({n} mirrors)"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::Config(crate::config::ConfigError::Invalid {
        key: "storage.storages",
        msg: format!(
            "storages still holding mirrors are not configured: {listed}; configured: {}. \
             Put them back, move their mirrors off (stasisctl storages drain), then remove them",
            names.join(", ")
        ),
    }))
}

/// A token cancelled on SIGTERM or Ctrl-C ([`shutdown_signal`]), for a process whose
/// parts each watch for shutdown.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    token
}

/// Resolves on SIGTERM (how orchestrators stop containers) or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The machine's host name (the container's, under Docker).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// `<host>-<pid>-<start ms>-<random>`, unique per process start: apalis refuses a
/// reused worker name for a heartbeat interval, and operators need to tell restarts
/// apart. The random part keeps two instances started in one process (tests) apart.
pub fn instance_name() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{}-{}-{started}-{nonce}", hostname(), std::process::id())
}
