use std::sync::Arc;

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
}
