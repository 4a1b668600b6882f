//! `stasisctl`: operator commands. It talks to Postgres and Redis directly, with the
//! same configuration as the services (`--config FILE` or `$STASIS_CONFIG`, then
//! `STASIS_*` variables), so it works when the API is down.

mod connect;
mod dead;
mod jobs;
mod mirror_admin;
mod mirrors;
mod output;
mod secrets;
mod ssh_keys;
mod status;
mod storages;
mod users;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db;
use stasis_shared::jobs::Jobs;
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
        command: users::UserCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: users::TokenCommand,
    },
    /// Inspect, retry and discard sync jobs.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Job counts per state, Redis depth, throughput, workers and the scheduler; or act
    /// on the queue (`purge-dead`).
    Queue {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<dead::QueueCommand>,
    },
    /// Worker processes alive, with their jobs in flight.
    Workers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause or resume scheduled syncs.
    Scheduler {
        #[command(subcommand)]
        command: status::SchedulerCommand,
    },
    /// Mirrors: list, sync now, history, pause, resume, rename, delete, change upstream,
    /// ssh deploy key and host keys.
    #[command(visible_alias = "mirror")]
    Mirrors {
        #[command(subcommand)]
        command: mirrors::MirrorsCommand,
    },
    /// Named storages: what each holds and whether it takes new mirrors (the default);
    /// drain one into the others.
    Storages {
        #[command(subcommand)]
        command: Option<storages::StoragesCommand>,
    },
    /// The keys sealing credentials: which ones the stored seals need; re-seal them all
    /// with `secrets.key` so a previous key can be retired.
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
}

/// Connections of one command: Postgres always, Redis only for commands that touch
/// the queue.
pub struct Services {
    pub cfg: Config,
    pub pool: PgPool,
}

impl Services {
    pub async fn redis(&self) -> anyhow::Result<ConnectionManager> {
        connect::redis(&self.cfg.redis).await
    }

    pub async fn jobs(&self) -> anyhow::Result<Jobs> {
        Ok(Jobs::new(self.pool.clone(), self.redis().await?, &self.cfg))
    }
}

/// Errors are printed one cause a line rather than through `Termination`, which
/// prints `Debug` and so a backtrace whenever `RUST_BACKTRACE` is set: noise for an
/// operator who mistyped a name. Usage errors exit 2 from clap before this.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&anyhow::Error::new(e).context("starting the runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e}");
    let mut said = e.to_string();
    for cause in e.chain().skip(1).map(ToString::to_string) {
        // Some errors repeat their source in their own message (sqlx's I/O errors).
        if !said.contains(&cause) {
            eprintln!("  caused by: {cause}");
        }
        said = cause;
    }
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    let pool = connect::postgres(&cfg.database).await?;
    let svc = Services { cfg, pool };
    match cli.command {
        Command::Migrate => {
            db::migrate(&svc.pool)
                .await
                .context("applying migrations")?;
            out!("migrations applied");
        }
        Command::User { command } => users::user(&svc.pool, command).await?,
        Command::Token { command } => users::token(&svc.pool, command).await?,
        Command::Jobs { command } => jobs::run(&svc, command).await?,
        Command::Queue {
            command: Some(command),
            ..
        } => dead::run(&svc, command).await?,
        Command::Queue { json, .. } => status::queue(&svc, json).await?,
        Command::Workers { json } => status::workers(&svc, json).await?,
        Command::Scheduler { command } => status::scheduler(&svc, command).await?,
        Command::Mirrors { command } => mirrors::run(&svc, command).await?,
        Command::Secrets { command } => secrets::run(&svc, command).await?,
        Command::Storages { command } => storages::run(&svc, command).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Operators learn the tool from `--help`; an undocumented flag is a bug.
    #[test]
    fn every_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "stasisctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
