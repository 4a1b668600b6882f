//! Removing a mirror for good, as the API's DELETE and `stasisctl mirror delete` both
//! do: under the repository's sync lock (so no worker writes into what goes away), its
//! queued deliveries, its bare repository on disk, then its row (which cascades to its
//! jobs and history). A storage this process does not mount has its copy removed by one
//! of that storage's workers.

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::db::{repos, storages};
use crate::domain::lifecycle::opening;
use crate::git::mirror_path;
use crate::jobs::Jobs;
use crate::lock::Leases;
use crate::{Config, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// A sync holds the repository's lock: nothing was touched; try when it ends.
    SyncRunning,
}

pub async fn remove_mirror(
    cfg: &Config,
    pool: &PgPool,
    redis: ConnectionManager,
    job_service: &Jobs,
    repo: &repos::Repo,
) -> Result<Removal> {
    let leases = Leases::new(redis, &cfg.queue.namespace);
    let removed = leases
        .while_repo_held(
            repo.id,
            cfg.sync.lock_ttl,
            repo.sync_fence,
            remove(cfg, pool, job_service, repo),
        )
        .await?;
    Ok(removed.map_or(Removal::SyncRunning, |()| Removal::Removed))
}

async fn remove(cfg: &Config, pool: &PgPool, job_service: &Jobs, repo: &repos::Repo) -> Result<()> {
    if let Some(job) = opening::active_job(pool, repo.id).await? {
        job_service.drop_deliveries(job).await?;
    }
    // its storage's copy, and the partial one of a move under way: removed here when
    // this process mounts the storage, and by a worker of the storage in any case (a
    // directory here may be an empty stand-in for a volume mounted elsewhere)
    for storage in std::iter::once(&repo.storage).chain(repo.move_to.as_ref()) {
        if let Some(root) = cfg.storage.root_of(storage).filter(|root| root.is_dir()) {
            let path = mirror_path(root, &repo.owner, &repo.name);
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Storage(format!("removing {}: {e}", path.display()))),
            }
        }
        storages::queue_removal(pool, storage, &repo.owner, &repo.name).await?;
    }
    repos::delete(pool, repo.id).await?;
    Ok(())
}
