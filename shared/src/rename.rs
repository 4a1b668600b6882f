//! Renaming a repository, as the API's PATCH /repos/{owner}/{repo} and `stasisctl
//! mirror rename` both do: under the repository's sync lock (so no worker writes into
//! the directory while it moves), the bare repository moves from
//! `<root>/<owner>/<old>.git` to `<root>/<owner>/<new>.git`, then the row takes the new
//! name. Workers compute the path from the row they read, so later syncs use the new
//! directory. If the row cannot be updated, the directory moves back.

use std::path::Path;

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::db::repos::Repo;
use crate::db::storages;
use crate::git::mirror_path;
use crate::lock::Leases;
use crate::{Config, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    Renamed,
    /// The owner has a repository of that name: nothing was touched.
    NameTaken,
    /// A directory of that name is already on disk (not a repository of the owner's):
    /// nothing was touched.
    PathOccupied,
    /// A sync holds the repository's lock: nothing was touched; try when it ends.
    SyncRunning,
    /// The mirror is moving to another storage: nothing was touched; try once moved.
    Moving,
}

/// Renames `repo` to `new_name`, which the caller has checked
/// (`crate::domain::names::check_repo_name`).
pub async fn rename_mirror(
    cfg: &Config,
    pool: &PgPool,
    redis: ConnectionManager,
    repo: &Repo,
    new_name: &str,
) -> Result<Rename> {
    if new_name == repo.name {
        return Ok(Rename::Renamed);
    }
    // Checked first so a taken name is refused without waiting for the lock; the
    // unique key decides in the end.
    if name_taken(pool, repo, new_name).await? {
        return Ok(Rename::NameTaken);
    }
    let leases = Leases::new(redis, &cfg.queue.namespace);
    let renamed = leases
        .while_repo_held(
            repo.id,
            cfg.sync.lock_ttl,
            repo.sync_fence,
            rename(cfg, pool, repo, new_name),
        )
        .await?;
    Ok(renamed.unwrap_or(Rename::SyncRunning))
}

async fn rename(cfg: &Config, pool: &PgPool, repo: &Repo, new_name: &str) -> Result<Rename> {
    if repo.move_to.is_some() {
        return Ok(Rename::Moving);
    }
    let Some(root) = cfg
        .storage
        .root_of(&repo.storage)
        .filter(|root| root.is_dir())
    else {
        return rename_unmounted(pool, repo, new_name).await;
    };
    let from = mirror_path(root, &repo.owner, &repo.name);
    let to = mirror_path(root, &repo.owner, new_name);
    if exists(&to).await? {
        return Ok(Rename::PathOccupied);
    }
    // A repository never synced has no directory: only its row changes. (Nor has a
    // stand-in directory for a volume mounted elsewhere: the old path is left for the
    // storage's workers to remove, and the next sync clones afresh at the new one.)
    if !exists(&from).await? {
        return rename_unmounted(pool, repo, new_name).await;
    }
    move_dir(&from, &to).await?;
    let updated =
        sqlx::query("UPDATE repositories SET name = $2, updated_at = now() WHERE id = $1")
            .bind(repo.id)
            .bind(new_name)
            .execute(pool)
            .await;
    let outcome = match updated {
        Ok(_) => return Ok(Rename::Renamed),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(Rename::NameTaken),
        Err(e) => Err(Error::Db(e)),
    };
    move_dir(&to, &from).await?;
    outcome
}

/// The storage is not mounted here: the row takes the new name, the copy at the old
/// name is left for a worker of the storage to remove, and the next sync clones the
/// mirror afresh at its new path.
async fn rename_unmounted(pool: &PgPool, repo: &Repo, new_name: &str) -> Result<Rename> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE repositories SET name = $2, updated_at = now(), next_sync_at = now() WHERE id = $1",
    )
    .bind(repo.id)
    .bind(new_name)
    .execute(&mut *tx)
    .await;
    match updated {
        Ok(_) => {}
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(Rename::NameTaken),
        Err(e) => return Err(Error::Db(e)),
    }
    storages::queue_removal(&mut *tx, &repo.storage, &repo.owner, &repo.name).await?;
    tx.commit().await?;
    Ok(Rename::Renamed)
}

async fn name_taken(pool: &PgPool, repo: &Repo, name: &str) -> Result<bool> {
    let taken = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM repositories WHERE owner_id = $1 AND name = $2)",
    )
    .bind(repo.owner_id)
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(taken)
}

async fn exists(path: &Path) -> Result<bool> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| Error::Storage(format!("checking {}: {e}", path.display())))
}

/// One `rename(2)`: both paths are under the owner's directory on one file system, so a
/// reader sees the repository at one path or the other, never half moved.
async fn move_dir(from: &Path, to: &Path) -> Result<()> {
    tokio::fs::rename(from, to).await.map_err(|e| {
        Error::Storage(format!(
            "moving {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}
