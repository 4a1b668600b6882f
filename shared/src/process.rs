//! Start-up and shutdown every binary shares.

use std::path::Path;

use crate::config::Config;
use crate::error::Result;

/// Loads the configuration and sets up logs and metrics for `process`.
pub fn start(process: &'static str, config: Option<&Path>) -> Result<Config> {
    let cfg = Config::load(config)?;
    crate::telemetry::init(process, &cfg)?;
    Ok(cfg)
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
