use std::path::{Path, PathBuf};
use std::sync::Arc;

use stasis_shared::db::repos::Repo;
use stasis_shared::git::mirror_path;

use crate::slots::Slots;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::jobs::Jobs;
use stasis_shared::lock::Leases;
use stasis_shared::secrets::Cipher;
use stasis_shared::Config;

use crate::permits::SyncPermits;
use crate::shutdown::InFlightSyncs;

/// What every job of this worker process shares.
pub struct WorkerContext {
    pub cfg: Config,
    pub pool: PgPool,
    pub leases: Leases,
    /// Where running syncs publish their progress.
    pub redis: ConnectionManager,
    /// Fleet-wide caps: syncs in all and per upstream host.
    pub slots: Slots,
    pub jobs: Jobs,
    /// Opens upstream credentials; `None` without `secrets.key`.
    pub cipher: Option<Cipher>,
    /// Unique per process start: apalis refuses a reused name for a heartbeat interval.
    pub name: String,
    /// Syncs of this process at once (`worker.concurrency`), shared by both lanes'
    /// consumers.
    pub permits: SyncPermits,
    /// Stopped together when `worker.shutdown_grace` runs out.
    pub syncs: Arc<InFlightSyncs>,
    /// The storages this worker serves (`worker.storages`).
    pub storages: Vec<String>,
}

impl WorkerContext {
    /// Whether this worker has `storage` mounted.
    pub fn serves(&self, storage: &str) -> bool {
        self.storages.iter().any(|s| s == storage)
    }

    /// Where `repo` is synced to: its directory on the storage its jobs go to (the
    /// target of a move under way). `None` for a storage this worker does not serve.
    pub fn mirror_path(&self, repo: &Repo) -> Option<PathBuf> {
        let storage = repo.route();
        if !self.serves(storage) {
            return None;
        }
        let root = self.cfg.storage.root_of(storage)?;
        Some(mirror_path(root, &repo.owner, &repo.name))
    }

    /// The root of the storage `repo`'s jobs go to, if this worker serves it.
    pub fn root_of(&self, repo: &Repo) -> Option<&Path> {
        let storage = repo.route();
        self.serves(storage)
            .then(|| self.cfg.storage.root_of(storage))
            .flatten()
    }
}
