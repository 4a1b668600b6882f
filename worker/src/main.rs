use std::path::PathBuf;

use clap::Parser;
use stasis_shared::ops::process;

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
    let process::Process { cfg, pool, redis } =
        process::boot("worker", args.config.as_deref()).await?;
    stasis_worker::runner::run(cfg, pool, redis, process::shutdown_signal()).await?;
    Ok(())
}
