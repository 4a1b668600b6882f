//! `stasisctl`: operator commands. Talks to Postgres directly (same config as the
//! services: `--config FILE` or `$STASIS_CONFIG`, then `STASIS_*` variables).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use stasis_shared::db::{self, users};
use stasis_shared::Config;

#[derive(Parser)]
#[command(
    name = "stasisctl",
    version,
    about = "Operate a Stasis Mirror Sync deployment"
)]
struct Cli {
    /// YAML configuration file (otherwise $STASIS_CONFIG; env overrides either).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run-time mirror settings.
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; its API token is printed alone on the last line.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Revoke a user's token.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum MirrorCommand {
    /// Set the default sync interval (e.g. `30m`, `2h`) without restarting anything;
    /// `reset` returns to `mirror.sync_interval` from the config.
    Interval { interval: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    let pool = db::connect(&cfg.database)
        .await
        .with_context(|| "connecting to Postgres (database.url)".to_string())?;
    match cli.command {
        Command::Migrate => {
            db::migrate(&pool).await.context("applying migrations")?;
            println!("migrations applied");
        }
        Command::User {
            command: UserCommand::Create { name, admin },
        } => {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("user name may contain only letters, digits, '-', '_' and '.'");
            }
            let (user, token) = match users::create(&pool, &name, admin).await {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    bail!("user `{name}` already exists")
                }
                other => other?,
            };
            println!(
                "created user {} ({}){}",
                user.username,
                user.id,
                if admin { ", admin" } else { "" }
            );
            println!("{token}");
        }
        Command::Token {
            command: TokenCommand::Revoke { name },
        } => {
            if !users::revoke_token(&pool, &name).await? {
                bail!("no user `{name}`");
            }
            println!("token of {name} revoked");
        }
        Command::Mirror {
            command: MirrorCommand::Interval { interval },
        } => {
            if interval == "reset" {
                sqlx::query("DELETE FROM settings WHERE key = $1")
                    .bind(db::SYNC_INTERVAL_SETTING)
                    .execute(&pool)
                    .await?;
                println!(
                    "sync interval reset to the configured {}",
                    humantime::format_duration(cfg.mirror.sync_interval)
                );
            } else {
                let parsed: Duration = humantime::parse_duration(&interval)
                    .with_context(|| format!("`{interval}` is not a duration like 30m or 2h"))?;
                if parsed < Duration::from_secs(1) {
                    bail!("interval must be at least 1s");
                }
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                )
                .bind(db::SYNC_INTERVAL_SETTING)
                .bind(parsed.as_secs().to_string())
                .execute(&pool)
                .await?;
                println!("sync interval set to {interval}; applies from each mirror's next sync");
            }
        }
    }
    Ok(())
}
