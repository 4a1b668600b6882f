//! The storages this worker serves, each heartbeat: their free space as
//! `stasis_storage_free_bytes{storage}` (a full disk fails every sync at once, and the
//! alert on it has to come before that), the same figure reported to Postgres (which
//! is how the other processes know the storage has a live worker, and how much room it
//! has for new mirrors), and the copies a storage no longer needs removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stasis_shared::db::{repos, storages};
use tracing::{debug, info, warn};

use crate::context::WorkerContext;

/// Copies removed per storage and pass: each is one directory tree, and a pass must end
/// well within a heartbeat on a busy disk.
const REMOVALS_PER_PASS: i64 = 20;

/// Runs until aborted.
pub async fn watch(ctx: Arc<WorkerContext>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for storage in &ctx.storages {
            let Some(root) = ctx.cfg.storage.root_of(storage) else {
                continue;
            };
            report(&ctx, storage, root).await;
        }
        remove_unneeded(&ctx).await;
    }
}

/// `statvfs` runs on a blocking thread: on a network filesystem it can hang, and must
/// not stall a runtime thread while it does.
async fn report(ctx: &WorkerContext, storage: &str, root: &Path) {
    // a root not made yet (no mirror imported) lives on its parent's filesystem
    let path = nearest_existing(root);
    let free = match tokio::task::spawn_blocking(move || free_bytes(&path)).await {
        Ok(Ok(free)) => free,
        Ok(Err(e)) => {
            warn!(error = %e, storage, root = %root.display(), "could not read the storage's free space");
            return;
        }
        Err(e) => {
            warn!(error = %e, "free space check did not finish");
            return;
        }
    };
    metrics::gauge!("stasis_storage_free_bytes", "storage" => storage.to_owned()).set(free as f64);
    if let Err(e) = storages::report(&ctx.pool, storage, &ctx.name, free).await {
        debug!(error = %e, storage, "could not report the storage to Postgres");
    }
}

/// Removes the copies this worker's storages no longer need (a moved mirror's source,
/// a deleted mirror's directory the API could not reach), each under the lease of the
/// mirror that now has that name, if any, so no sync writes there while it goes.
async fn remove_unneeded(ctx: &WorkerContext) {
    let found = match storages::removals(&ctx.pool, &ctx.storages, REMOVALS_PER_PASS).await {
        Ok(found) => found,
        Err(e) => {
            debug!(error = %e, "could not read the copies to remove");
            return;
        }
    };
    for removal in found {
        let outcome = remove_one(ctx, &removal).await;
        let label = match &outcome {
            Ok(true) => "removed",
            Ok(false) => "kept",
            Err(_) => "failed",
        };
        metrics::counter!("stasis_storage_removals_total", "outcome" => label).increment(1);
        match outcome {
            Ok(_) => {
                if let Err(e) = storages::removed(&ctx.pool, removal.id).await {
                    debug!(error = %e, "could not mark a copy removed; it is looked at again");
                }
            }
            Err(e) => {
                warn!(error = %e, storage = removal.storage, "could not remove a copy; tried again later")
            }
        }
    }
}

/// `Ok(false)`: a mirror lives at that path again, and its directory stays.
async fn remove_one(ctx: &WorkerContext, removal: &storages::Removal) -> Result<bool, String> {
    let Some(root) = ctx.cfg.storage.root_of(&removal.storage) else {
        return Err("storage not configured".into());
    };
    let path = stasis_shared::git::mirror_path(root, &removal.owner, &removal.name);
    if removal.in_use {
        return Ok(false);
    }
    let holder = repos::find_by_name(&ctx.pool, &removal.owner, &removal.name)
        .await
        .map_err(|e| e.to_string())?;
    let Some(repo) = holder else {
        remove_dir(&path).await?;
        info!(storage = removal.storage, path = %path.display(), "copy removed");
        return Ok(true);
    };
    // a mirror of that name elsewhere: its lease keeps it from moving here meanwhile
    let storage = removal.storage.clone();
    let work = async {
        let now = repos::find(&ctx.pool, repo.id).await.map_err(Failed::Db)?;
        match now {
            Some(now) if now.storage == storage || now.move_to.as_deref() == Some(&storage) => {
                Ok(false)
            }
            _ => remove_dir(&path).await.map(|()| true).map_err(Failed::Io),
        }
    };
    let removed = ctx
        .leases
        .while_repo_held(repo.id, ctx.cfg.sync.lock_ttl, repo.sync_fence, work)
        .await
        .map_err(|e| e.to_string())?;
    removed.ok_or_else(|| "the mirror of that name is syncing".to_owned())
}

/// Why a removal under a lease did not happen.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Db(sqlx::Error),
    #[error("{0}")]
    Io(String),
}

async fn remove_dir(path: &Path) -> Result<(), String> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

/// `path`, or its nearest ancestor that exists.
fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(path)
        .to_path_buf()
}

/// Bytes an unprivileged process may still write under `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let free = super::free_bytes(dir.path()).unwrap();
        assert!(free > 0, "a test machine with a full disk: {free}");
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
        let missing = dir.path().join("not/made/yet");
        assert_eq!(super::nearest_existing(&missing), dir.path());
    }
}
