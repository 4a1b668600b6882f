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

/// `<host>-<pid>-<start ms>-<random>`: the random part keeps two workers started in one
/// process (tests, several runners) apart.
pub fn unique_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{started}-{nonce}", std::process::id())
}
