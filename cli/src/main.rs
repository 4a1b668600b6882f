//! `stasisctl`: operator commands. It talks to Postgres and Redis directly, with the
//! same configuration as the services (`--config FILE` or `$STASIS_CONFIG`, then
//! `STASIS_*` variables), so it works when the API is down.

mod jobs;
mod mirrors;
mod output;
mod status;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::{self, users};
use stasis_shared::queue::{self, Enqueuer};
use stasis_shared::Config;

#[derive(Parser)]
#[command(
    name = "stasisctl",
    version,
    about = "Operate a Stasis Mirror Sync deployment (talks to Postgres and Redis directly)"
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
    /// Inspect, retry and discard sync jobs.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Job counts per state, Redis depth, throughput, workers and the scheduler.
    Queue {
        #[arg(long)]
        json: bool,
    },
    /// Worker processes alive, with their jobs in flight.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Pause or resume scheduled syncs.
    Scheduler {
        #[command(subcommand)]
        command: status::SchedulerCommand,
    },
    /// Mirrors: list, sync now, history, default interval.
    #[command(visible_alias = "mirror")]
    Mirrors {
        #[command(subcommand)]
        command: mirrors::MirrorsCommand,
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

/// Connections of one command: Postgres always, Redis only for commands that touch
/// the queue.
pub struct Services {
    pub cfg: Config,
    pub pool: PgPool,
}

impl Services {
    pub async fn redis(&self) -> anyhow::Result<ConnectionManager> {
        queue::connect_redis(&self.cfg.redis)
            .await
            .context("connecting to Redis (redis.url)")
    }

    pub async fn enqueuer(&self) -> anyhow::Result<Enqueuer> {
        Ok(Enqueuer::new(
            self.pool.clone(),
            self.redis().await?,
            &self.cfg.queue,
            self.cfg.sync.max_attempts,
        ))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    let pool = db::connect(&cfg.database)
        .await
        .context("connecting to Postgres (database.url)")?;
    let svc = Services { cfg, pool };
    match cli.command {
        Command::Migrate => {
            db::migrate(&svc.pool)
                .await
                .context("applying migrations")?;
            println!("migrations applied");
        }
        Command::User {
            command: UserCommand::Create { name, admin },
        } => create_user(&svc.pool, &name, admin).await?,
        Command::Token {
            command: TokenCommand::Revoke { name },
        } => {
            if !users::revoke_token(&svc.pool, &name).await? {
                bail!("no user `{name}`");
            }
            println!("token of {name} revoked");
        }
        Command::Jobs { command } => jobs::run(&svc, command).await?,
        Command::Queue { json } => status::queue(&svc, json).await?,
        Command::Workers { json } => status::workers(&svc, json).await?,
        Command::Scheduler { command } => status::scheduler(&svc, command).await?,
        Command::Mirrors { command } => mirrors::run(&svc, command).await?,
    }
    Ok(())
}

async fn create_user(pool: &PgPool, name: &str, admin: bool) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("user name may contain only letters, digits, '-', '_' and '.'");
    }
    let (user, token) = match users::create(pool, name, admin).await {
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
    Ok(())
}
