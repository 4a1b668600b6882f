use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stasis_shared::{db, process, queue};
use tokio_util::sync::CancellationToken;

/// Enqueues a sync for every mirror whose next sync is due.
#[derive(Parser)]
#[command(name = "stasis-scheduler", version)]
struct Args {
    /// YAML configuration file (otherwise $STASIS_CONFIG; env overrides either).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = process::start("scheduler", args.config.as_deref())?;
    let pool = db::connect(&cfg.database)
        .await
        .context("connecting to Postgres")?;
    let redis = queue::connect_redis(&cfg.redis)
        .await
        .context("connecting to Redis")?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        process::shutdown_signal().await;
        on_signal.cancel();
    });
    stasis_scheduler::leader::run(cfg, pool, redis, shutdown).await;
    Ok(())
}
