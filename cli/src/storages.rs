//! `stasisctl storages` and `stasisctl mirror move`: where mirrors live, and moving them
//! between storages.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use stasis_shared::db::repos;
use stasis_shared::db::storages::NotMoved;
use stasis_shared::moves;
use stasis_shared::placement;

use crate::output::{self, table};
use crate::{out, Services};

#[derive(Subcommand)]
pub enum StoragesCommand {
    /// Each storage: live workers, free space, mirrors and bytes, whether it takes new
    /// mirrors and why not.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move up to --limit of a storage's mirrors to another (mark it read_only first so
    /// it takes no new ones); run again until none remain.
    Drain {
        /// The storage to move mirrors off.
        storage: String,
        /// Where they go; omitted: each to a storage chosen as for a new mirror.
        #[arg(long)]
        to: Option<String>,
        /// Only this owner's mirrors.
        #[arg(long)]
        owner: Option<String>,
        /// The most mirrors this run moves (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=moves::MAX_DRAIN))]
        limit: i64,
    },
}

pub async fn run(svc: &Services, command: Option<StoragesCommand>) -> anyhow::Result<()> {
    match command.unwrap_or(StoragesCommand::List { json: false }) {
        StoragesCommand::List { json } => list(svc, json).await,
        StoragesCommand::Drain {
            storage,
            to,
            owner,
            limit,
        } => {
            let jobs = svc.jobs().await?;
            let drained = moves::drain(
                &svc.cfg,
                &svc.pool,
                &jobs,
                &storage,
                to.as_deref(),
                owner.as_deref(),
                limit,
            )
            .await?
            .map_err(|refused| anyhow!("{refused}"))?;
            out!(
                "{} mirrors moving off {storage}; {} remain on it",
                drained.moving,
                drained.remaining
            );
            Ok(())
        }
    }
}

async fn list(svc: &Services, json: bool) -> anyhow::Result<()> {
    let all = placement::fitness(&svc.cfg, &svc.pool).await?;
    if json {
        return output::json(&all);
    }
    let rows = all.iter().map(|f| {
        vec![
            f.state.name.clone(),
            f.weight.to_string(),
            f.state.live_workers.to_string(),
            f.state
                .free_bytes
                .map_or("-".into(), |b| format!("{:.1} GiB", b as f64 / GIB)),
            f.state.mirrors.to_string(),
            format!("{:.1} GiB", f.state.bytes as f64 / GIB),
            f.state.moving_in.to_string(),
            match &f.reason {
                None => "yes".into(),
                Some(why) => format!("no: {why}"),
            },
        ]
    });
    let header = [
        "STORAGE",
        "WEIGHT",
        "WORKERS",
        "FREE",
        "MIRRORS",
        "SIZE",
        "MOVING IN",
        "NEW MIRRORS",
    ];
    out!("{}", table(&header, rows));
    Ok(())
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `stasisctl mirror move OWNER/NAME --to STORAGE`.
pub async fn move_mirror(svc: &Services, full: &str, to: &str) -> anyhow::Result<()> {
    moves::check_target(&svc.cfg, to).map_err(|refused| anyhow!("{refused}"))?;
    let Some((owner, name)) = full.split_once('/') else {
        bail!("the repository is OWNER/NAME, not `{full}`");
    };
    let repo = repos::find_by_name(&svc.pool, owner, name)
        .await?
        .ok_or_else(|| anyhow!("no repository {full}"))?;
    let jobs = svc.jobs().await?;
    match moves::begin(&svc.pool, &jobs, repo.id, to).await? {
        None => bail!("no repository {full}"),
        Some(Ok(begun)) => {
            out!(
                "{full} moving to storage {to} (move {}, job {})",
                begun.move_id,
                begun.job_id
            );
            Ok(())
        }
        Some(Err(NotMoved::AlreadyThere)) => bail!("{full} is on storage {to} already"),
        Some(Err(NotMoved::Moving(other))) => bail!("{full} is moving to storage {other} already"),
    }
}
