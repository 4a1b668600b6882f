//! A sync that moves its mirror to another storage. It runs on a worker of the target
//! storage, under the repository's lease like any sync: the mirror is cloned afresh
//! from its upstream into the target's directory (or copied from the source first, by a
//! worker that mounts both), and once that sync is recorded the
//! mirror switches storage in one fenced statement, which also leaves the source copy
//! for a worker of the source storage to remove. Until the switch the source copy is
//! the mirror. A worker that dies or stops mid-move leaves it there, and the next
//! delivery tries the move again from a clean target directory. An attempt that fails
//! ends the move (recorded with its error): the job's retry, like every later sync, runs
//! on the source storage, and the operator asks again once the cause is fixed.

use std::path::Path;

use stasis_shared::db::repos::Repo;
use stasis_shared::db::storages;
use stasis_shared::domain::lifecycle::policy::End;
use tracing::{info, warn};

use crate::context::WorkerContext;
use crate::error::WorkerError;
use crate::git::fetch::{FetchError, FetchReport};

/// Before the fetch: the move is marked running, and whatever an earlier attempt left
/// in the target directory is removed (no mirror lives there: its jobs come here only
/// while it moves). A worker that mounts the source storage too starts the target from
/// a copy of the source (the lease keeps every writer away from it meanwhile), so the
/// fetch only brings what the upstream has since, and LFS objects come along; otherwise
/// the fetch clones it afresh.
pub(crate) async fn begin(
    ctx: &WorkerContext,
    repo: &Repo,
    path: &Path,
) -> Result<(), WorkerError> {
    storages::start_move(&ctx.pool, repo.id).await?;
    remove_dir(path).await;
    let source = ctx
        .serves(&repo.storage)
        .then(|| ctx.cfg.storage.root_of(&repo.storage))
        .flatten()
        .map(|root| stasis_shared::git::mirror_path(root, &repo.owner, &repo.name))
        .filter(|source| source.is_dir());
    if let Some(source) = source {
        let (from, to) = (source, path.to_owned());
        match tokio::task::spawn_blocking(move || copy_tree(&from, &to)).await {
            Ok(Ok(bytes)) => {
                info!(
                    from = %repo.storage,
                    to = repo.route(),
                    bytes,
                    "moving the mirror: copied from its storage, now fetching"
                );
                return Ok(());
            }
            // a fresh clone still does it
            Ok(Err(e)) => {
                warn!(error = %e, "could not copy the mirror from its storage; cloning it afresh")
            }
            Err(e) => warn!(error = %e, "the copy did not finish; cloning it afresh"),
        }
        remove_dir(path).await;
    }
    info!(
        from = %repo.storage,
        to = repo.route(),
        "moving the mirror: cloning it afresh on its new storage"
    );
    Ok(())
}

/// Copies the directory tree `from` to `to` (which must not exist), files and
/// directories alone; the bytes copied.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            bytes += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
        }
        // a bare repository holds no symlinks; a stray one is not followed
    }
    Ok(bytes)
}

/// After the sync was recorded under the lease with fence `fence`.
pub(crate) async fn end(
    ctx: &WorkerContext,
    repo: &Repo,
    path: &Path,
    fence: i64,
    end: &End,
    fetched: &Result<FetchReport, FetchError>,
) -> Result<(), WorkerError> {
    let to = repo.route();
    match (end, fetched) {
        (End::Success { .. }, Ok(_)) => {
            if storages::finish_move(&ctx.pool, repo.id, fence, to).await? {
                metrics::counter!("stasis_storage_moves_total", "outcome" => "done").increment(1);
                info!(from = %repo.storage, to, "mirror moved");
            } else {
                // a newer holder or a withdrawn move: the copy here is not the mirror
                warn!(
                    to,
                    "the move was not switched; the mirror stays where it is"
                );
            }
        }
        // stopped by a shutdown: the next delivery tries the move again
        (End::Interrupted, _) => {}
        (_, result) => {
            let error = match result {
                Err(e) => e.message.clone(),
                Ok(_) => "the sync did not succeed".to_owned(),
            };
            storages::fail_move(&ctx.pool, repo.id, &error).await?;
            remove_dir(path).await;
            metrics::counter!("stasis_storage_moves_total", "outcome" => "failed").increment(1);
            warn!(from = %repo.storage, to, error, "move failed; the mirror stays where it was");
        }
    }
    Ok(())
}

async fn remove_dir(path: &Path) {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(error = %e, path = %path.display(), "could not remove a partial copy"),
    }
}
