/// Failures of the job machinery itself (not of the upstream): returned to apalis so the
/// delivery is retried from Redis rather than lost.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Shared(#[from] stasis_shared::Error),
    #[error("corrupt job record: {0}")]
    Corrupt(String),
    #[error("sync task failed: {0}")]
    Task(String),
}

impl WorkerError {
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            WorkerError::Db(_) => Some("postgres"),
            WorkerError::Redis(_) => Some("redis"),
            WorkerError::Shared(e) => e.backend(),
            WorkerError::Corrupt(_) | WorkerError::Task(_) => None,
        }
    }
}
