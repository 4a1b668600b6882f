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
