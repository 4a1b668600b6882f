use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stasis_shared::{db, process, queue};

/// Fetches mirrors from their upstreams as `SyncMirror` jobs arrive.
#[derive(Parser)]
#[command(name = "stasis-worker", version)]
struct Args {
    /// YAML configuration file (otherwise $STASIS_CONFIG; env overrides either).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = process::start("worker", args.config.as_deref())?;
    let pool = db::connect(&cfg.database)
        .await
        .context("connecting to Postgres")?;
    let redis = queue::connect_redis(&cfg.redis)
        .await
        .context("connecting to Redis")?;
    stasis_worker::runner::run(cfg, pool, redis, process::shutdown_signal()).await?;
    Ok(())
}
