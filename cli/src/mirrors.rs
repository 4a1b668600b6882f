//! `stasisctl mirrors`: list mirrors, sync one now, read its history, and change the
//! default sync interval at run time (the contract's interval setting).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use stasis_shared::db::repos::{self, RepoFilter, Viewer};
use stasis_shared::db::{lfs_missing, runs, settings};
use stasis_shared::domain::names::split_repo;
use stasis_shared::domain::{RunOutcome, SyncReason, SyncStatus};
use stasis_shared::git::url::redact_url;
use stasis_shared::overview::SyncInterval;

use crate::output::{self, table, text, time};
use crate::ssh_keys::{self, DeployKeyCommand, HostKeysCommand};
use crate::{mirror_admin, out, Services};

#[derive(Subcommand)]
pub enum MirrorsCommand {
    /// Mirrors with their sync status, by owner and name.
    List {
        /// Only mirrors whose last sync failed (`failed` or `hard_failed`).
        #[arg(long)]
        failed: bool,
        /// Only this owner's mirrors.
        #[arg(long)]
        owner: Option<String>,
        /// Only mirrors whose upstream is on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only mirrors whose OWNER/NAME contains this text (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Only mirrors on this storage (or moving to it).
        #[arg(long)]
        storage: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Mirrors per page (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        per_page: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a sync of OWNER/NAME now (an already queued or running one is reused).
    Sync {
        /// The mirror, as OWNER/NAME.
        repo: String,
        /// Also try again every Git LFS object the mirror lacks, now rather than when
        /// their backoff ends.
        #[arg(long)]
        lfs_retry: bool,
        /// Wait for the sync to end, showing its download's progress; exits non-zero
        /// unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// The latest sync attempts of OWNER/NAME, newest first.
    History {
        /// The repository, as OWNER/NAME.
        repo: String,
        /// How many attempts to show (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set the default sync interval (e.g. `30m`, `2h`) without restarting anything;
    /// `reset` returns to `mirror.sync_interval` from the config. Without a value: show it.
    Interval {
        /// A duration of at least 1m, or `reset`; leave out to show the current one.
        interval: Option<String>,
    },
    /// Stop scheduled syncs of OWNER/NAME (manual syncs still run) until `resume`.
    Pause {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// Schedule syncs of OWNER/NAME again.
    Resume {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// Rename OWNER/NAME to NEW (same owner): its bare directory moves with it.
    /// Refused while a sync of it runs.
    Rename {
        /// The repository, as OWNER/NAME.
        repo: String,
        /// The new name (letters, digits, `.`, `-`, `_`).
        name: String,
    },
    /// Move OWNER/NAME to another storage: a worker there clones it afresh, and it
    /// switches once that sync succeeded (see `stasisctl storages`).
    Move {
        /// The repository, as OWNER/NAME.
        repo: String,
        /// The storage to move it to.
        #[arg(long)]
        to: String,
    },
    /// Delete OWNER/NAME: its row, history, jobs, queued deliveries and bare directory.
    /// Refused while a sync of it runs.
    Delete {
        /// The repository, as OWNER/NAME.
        repo: String,
    },
    /// The ssh deploy key of a mirror: show, rotate, set from a file, remove.
    DeployKey {
        #[command(subcommand)]
        command: DeployKeyCommand,
    },
    /// The ssh host keys a mirror's syncs accept: show, detect, confirm.
    HostKeys {
        #[command(subcommand)]
        command: HostKeysCommand,
    },
    /// Point OWNER/NAME at a new upstream, checked and with its credentials sealed as
    /// the API does; the mirror is due at once.
    SetUrl {
        /// The mirror, as OWNER/NAME.
        repo: String,
        /// The new upstream URL (credentials in it are stored sealed, never shown).
        url: String,
    },
    /// Set or remove the credentials of OWNER/NAME's http(s) upstream: a user name and a
    /// password or token read from a file (`-`: stdin), sealed as the API seals them;
    /// the mirror is due at once.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["username", "remove"])))]
    SetCredentials {
        /// The mirror, as OWNER/NAME.
        repo: String,
        /// The user name (for a token, what the host expects: e.g. `x-access-token` on
        /// GitHub, `oauth2` on GitLab).
        #[arg(long, requires = "secret_file")]
        username: Option<String>,
        /// File holding the password or token (`-`: read it from stdin).
        #[arg(long, requires = "username")]
        secret_file: Option<std::path::PathBuf>,
        /// Remove the stored credentials.
        #[arg(long, conflicts_with_all = ["username", "secret_file"])]
        remove: bool,
    },
}

pub async fn run(svc: &Services, command: MirrorsCommand) -> anyhow::Result<()> {
    let pool = &svc.pool;
    match command {
        MirrorsCommand::List {
            failed,
            owner,
            host,
            search,
            storage,
            page,
            per_page,
            json,
        } => {
            let filter = RepoFilter {
                mirror: Some(true),
                status: if failed {
                    vec![SyncStatus::Failed, SyncStatus::HardFailed]
                } else {
                    Vec::new()
                },
                owner,
                host,
                search,
                storage,
                viewer: Viewer::All,
            };
            let limit = i64::from(per_page);
            let offset = i64::from(page.max(1) - 1) * limit;
            let (mirrors, total) =
                repos::list(pool, &filter, repos::RepoSort::Name, limit, offset).await?;
            if json {
                let items: Vec<_> = mirrors
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "full_name": format!("{}/{}", r.owner, r.name),
                            "mirror_url": r.mirror_url.as_deref().map(redact_url),
                            "enabled": r.mirror_enabled,
                            "sync_status": r.sync_status,
                            "sync_error": r.sync_error,
                            "last_synced_at": r.last_synced_at,
                            "next_sync_at": r.next_sync_at,
                            "last_duration_ms": r.last_duration_ms,
                        })
                    })
                    .collect();
                return output::json(&serde_json::json!({ "mirrors": items, "total": total }));
            }
            let rows = mirrors.iter().map(|r| {
                vec![
                    format!("{}/{}", r.owner, r.name),
                    r.sync_status.to_string(),
                    time(r.last_synced_at),
                    time(r.next_sync_at),
                    text(r.sync_error.as_deref()),
                ]
            });
            let header = ["MIRROR", "STATUS", "LAST SYNC", "NEXT SYNC", "ERROR"];
            out!("{}", table(&header, rows));
            out!("{} of {total} mirrors", mirrors.len());
        }
        MirrorsCommand::Sync {
            repo,
            lfs_retry,
            wait,
        } => {
            let (owner, name) = split_repo(&repo)?;
            let found = repos::find_by_name(pool, &owner, &name)
                .await?
                .filter(|r| r.is_mirror)
                .ok_or_else(|| anyhow!("no mirror {repo}"))?;
            if lfs_retry {
                let due = lfs_missing::retry_now(pool, found.id).await?;
                out!("{due} missing LFS objects of {repo} due now");
            }
            let enqueued = svc
                .jobs()
                .await?
                .request(found.id, SyncReason::Manual)
                .await?
                .ok_or_else(|| anyhow!("no mirror {repo}"))?;
            if enqueued.created {
                out!("sync of {repo} queued as job {}", enqueued.job_id);
            } else {
                out!(
                    "{repo} already has job {} queued or running",
                    enqueued.job_id
                );
            }
            if wait {
                crate::wait::wait(svc, &repo, found.id, enqueued.job_id).await?;
            }
        }
        MirrorsCommand::History { repo, limit, json } => {
            let (owner, name) = split_repo(&repo)?;
            let found = repos::find_by_name(pool, &owner, &name)
                .await?
                .ok_or_else(|| anyhow!("no repository {repo}"))?;
            let history = runs::for_repo(pool, found.id, i64::from(limit.clamp(1, 1000))).await?;
            if json {
                return output::json(&serde_json::json!({ "runs": history }));
            }
            let rows = history.iter().map(|r| {
                vec![
                    time(Some(r.started_at)),
                    r.duration_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    r.attempt.to_string(),
                    text(r.outcome.map(RunOutcome::as_str)),
                    output::refs(r),
                    r.bytes_received.to_string(),
                    text(r.error.as_deref()),
                ]
            });
            let header = [
                "STARTED", "TOOK", "ATTEMPT", "OUTCOME", "REFS", "BYTES", "ERROR",
            ];
            out!("{}", table(&header, rows));
        }
        MirrorsCommand::Interval { interval } => {
            match interval.as_deref() {
                None => {}
                Some("reset") => settings::set_sync_interval(pool, None).await?,
                Some(text) => {
                    let parsed: Duration = humantime::parse_duration(text)
                        .with_context(|| format!("`{text}` is not a duration like 30m or 2h"))?;
                    if parsed < Duration::from_secs(60) {
                        bail!("the interval must be at least 1m");
                    }
                    settings::set_sync_interval(pool, Some(parsed)).await?;
                }
            }
            let current = SyncInterval::current(&svc.cfg, pool).await?;
            out!(
                "sync interval {} (from {}); applies from each mirror's next sync",
                current.human,
                current.source
            );
        }
        MirrorsCommand::Pause { repo } => mirror_admin::set_enabled(svc, &repo, false).await?,
        MirrorsCommand::Resume { repo } => mirror_admin::set_enabled(svc, &repo, true).await?,
        MirrorsCommand::Rename { repo, name } => mirror_admin::rename(svc, &repo, &name).await?,
        MirrorsCommand::Delete { repo } => mirror_admin::delete(svc, &repo).await?,
        MirrorsCommand::Move { repo, to } => crate::storages::move_mirror(svc, &repo, &to).await?,
        MirrorsCommand::DeployKey { command } => ssh_keys::deploy_key(svc, command).await?,
        MirrorsCommand::HostKeys { command } => ssh_keys::host_keys(svc, command).await?,
        MirrorsCommand::SetUrl { repo, url } => mirror_admin::set_url(svc, &repo, &url).await?,
        MirrorsCommand::SetCredentials {
            repo,
            username,
            secret_file,
            remove: _,
        } => {
            mirror_admin::set_credentials(svc, &repo, username.as_deref(), secret_file.as_deref())
                .await?
        }
    }
    Ok(())
}
