use sqlx::PgPool;
use stasis_shared::lock::Leases;
use stasis_shared::queue::Enqueuer;
use stasis_shared::Config;

/// What every job of this worker process shares.
pub struct WorkerContext {
    pub cfg: Config,
    pub pool: PgPool,
    pub leases: Leases,
    pub enqueuer: Enqueuer,
    /// Unique per process start: apalis refuses a reused name for a heartbeat interval.
    pub name: String,
}
