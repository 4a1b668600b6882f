#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Shared(#[from] stasis_shared::Error),
}

impl SchedulerError {
    /// Counts a failed pass of `op`; an outage of Postgres makes the pool check its
    /// connections before use for a while.
    pub fn record(&self, op: &'static str) {
        if let SchedulerError::Db(db) = self {
            stasis_shared::db::outage(db);
        }
        stasis_shared::error::count_backend_error(self.backend(), op);
    }

    pub fn backend(&self) -> Option<&'static str> {
        match self {
            SchedulerError::Db(_) => Some("postgres"),
            SchedulerError::Redis(_) => Some("redis"),
            SchedulerError::Shared(e) => e.backend(),
        }
    }
}
