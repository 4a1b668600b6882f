#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("connecting to Postgres: {0}")]
    ConnectPostgres(#[source] sqlx::Error),
    #[error("connecting to Redis: {0}")]
    ConnectRedis(#[source] redis::RedisError),
    #[error("queue push failed: {0}")]
    Push(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("mirror storage: {0}")]
    Storage(String),
}

impl Error {
    /// The backend that failed, for `stasis_backend_errors_total{backend}`.
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            Error::Db(_) | Error::Migrate(_) | Error::ConnectPostgres(_) => Some("postgres"),
            Error::Redis(_) | Error::Push(_) | Error::ConnectRedis(_) => Some("redis"),
            Error::Config(_) | Error::Telemetry(_) | Error::Storage(_) => None,
        }
    }

    /// Counts a failed pass of `op` (see [`count_backend_error`]); an outage of Postgres
    /// makes the pool check its connections before use for a while.
    pub fn record(&self, op: &'static str) {
        if let Error::Db(db) = self {
            crate::db::outage(db);
        }
        count_backend_error(self.backend(), op);
    }
}

/// Counts a failed call to Postgres or Redis; `op` is a closed set per process
/// (`deliver`, `tick`, `sample`, `reap`, `recover`, `retain`, `notify`, `request`).
pub fn count_backend_error(backend: Option<&'static str>, op: &'static str) {
    if let Some(backend) = backend {
        metrics::counter!("stasis_backend_errors_total", "backend" => backend, "op" => op)
            .increment(1);
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
