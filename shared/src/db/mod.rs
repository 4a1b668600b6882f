//! Postgres: pool, migrations and the queries more than one binary runs.

pub mod coalesce;
pub mod jobs;
pub mod notifications;
pub mod recovery;
pub mod repos;
pub mod runs;
pub mod settings;
pub mod users;
pub mod workers;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        // sqlx pings every connection it hands out by default: a round trip per request
        // (measured: 10% of the status endpoint's throughput). A connection in steady use
        // is known alive; one that sat idle, as every connection does across a Postgres
        // restart in a quiet period, is checked and replaced when dead.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(
                async move { Ok(meta.idle_for < PING_AFTER_IDLE || conn.ping().await.is_ok()) },
            )
        })
        .connect(&cfg.url)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A read-only transaction on one snapshot: a page and its total, read in two
/// statements, then agree even while workers move jobs between states.
pub async fn snapshot(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
