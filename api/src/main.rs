use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use stasis_api::AppState;
use stasis_shared::ops::process;

/// Serves the Stasis REST API.
#[derive(Parser)]
#[command(name = "stasis-api", version)]
struct Args {
    /// YAML configuration file (otherwise $STASIS_CONFIG; env overrides either).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let process::Process { cfg, pool, redis } =
        process::boot("api", args.config.as_deref()).await?;
    let cipher = stasis_shared::secrets::load(&cfg.secrets, &pool).await?;
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding api.listen {}", cfg.api.listen))?;
    tracing::info!(addr = %cfg.api.listen, "api listening");
    stasis_api::serve(
        listener,
        AppState::new(cfg, pool, redis, cipher),
        process::shutdown_signal(),
    )
    .await?;
    Ok(())
}
