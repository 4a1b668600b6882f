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
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            SchedulerError::Db(_) => Some("postgres"),
            SchedulerError::Redis(_) => Some("redis"),
            SchedulerError::Shared(e) => e.backend(),
        }
    }
}
