use std::path::PathBuf;

use clap::Parser;
use stasis_shared::ops::process;

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
    let process::Process { cfg, pool, redis } =
        process::boot("scheduler", args.config.as_deref()).await?;
    stasis_scheduler::leader::run(cfg, pool, redis, process::shutdown_token()).await;
    Ok(())
}
