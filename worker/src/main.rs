use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stasis_shared::{db, queue, telemetry, Config};

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
    let cfg = Config::load(args.config.as_deref())?;
    telemetry::init("worker", &cfg)?;
    let pool = db::connect(&cfg.database)
        .await
        .context("connecting to Postgres")?;
    let redis = queue::connect_redis(&cfg.redis)
        .await
        .context("connecting to Redis")?;
    stasis_worker::runner::run(cfg, pool, redis, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
