use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stasis_shared::{db, queue, telemetry, Config};
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
    let cfg = Config::load(args.config.as_deref())?;
    telemetry::init("scheduler", &cfg)?;
    let pool = db::connect(&cfg.database)
        .await
        .context("connecting to Postgres")?;
    let redis = queue::connect_redis(&cfg.redis)
        .await
        .context("connecting to Redis")?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        on_signal.cancel();
    });
    stasis_scheduler::leader::run(cfg, pool, redis, shutdown).await;
    Ok(())
}
