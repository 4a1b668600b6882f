#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
            Error::Db(_) | Error::Migrate(_) => Some("postgres"),
            Error::Redis(_) | Error::Push(_) => Some("redis"),
            Error::Config(_) | Error::Telemetry(_) | Error::Storage(_) => None,
        }
    }
}

/// Whether a Postgres error means the database is unreachable, restarting or out of
/// connections (an outage to answer with 503 and retry), not a fault of the statement.
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // class 08: connection exception; 57P01-57P03: shut down by an administrator,
        // crash recovery, not accepting connections yet; 53300: too many connections
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
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
