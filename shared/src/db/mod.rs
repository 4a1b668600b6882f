//! Postgres: pool, migrations and the queries more than one binary runs.

pub mod coalesce;
pub mod jobs;
pub mod lfs_missing;
pub mod notifications;
pub mod pooler;
pub mod recovery;
pub mod repos;
pub mod reworded;
pub mod runs;
pub mod settings;
pub mod ssh_keys;
pub mod storages;
pub mod users;
pub mod waiting;
pub mod workers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool, Postgres, Transaction};

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// For this long after an error that looked like an outage, every connection is pinged
/// before it is handed out: those opened before a restart are dead, busy or not.
const PING_AFTER_OUTAGE: Duration = Duration::from_secs(30);

/// When this process last saw Postgres unreachable, in ms since [`epoch`].
static LAST_OUTAGE_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Whether a Postgres error means the database is unreachable, restarting or out of
/// connections (an outage to answer with 503 and retry), not a fault of the statement.
/// One that does makes the pool check its connections before use for a while: those
/// opened before a restart are dead, busy or not.
pub fn outage(e: &sqlx::Error) -> bool {
    let unavailable = match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // class 08: connection exception; 57P01-57P03: shut down by an administrator,
        // crash recovery, not accepting connections yet; 53300: too many connections;
        // 57014: cancelled by `database.statement_timeout` (a saturated or stuck server)
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "57014")
        }),
        _ => false,
    };
    if unavailable {
        let ms = epoch().elapsed().as_millis() as u64;
        LAST_OUTAGE_MS.store(ms.max(1), Ordering::Relaxed);
    }
    unavailable
}

fn outage_recent() -> bool {
    let at = LAST_OUTAGE_MS.load(Ordering::Relaxed);
    at != 0 && epoch().elapsed().as_millis() as u64 <= at + PING_AFTER_OUTAGE.as_millis() as u64
}

pub async fn connect(cfg: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(&cfg.url)?;
    pooler::refuse_transaction_pooler(&options).await?;
    // A `SET` once per connection rather than the `options` startup parameter, which
    // PgBouncer refuses (or, told to ignore it, drops): a session-mode pooler then keeps
    // the limit. Simple protocol: nothing prepared.
    let statement_timeout = format!(
        "SET statement_timeout = {}",
        cfg.statement_timeout.as_millis()
    );
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        // sqlx pings every connection it hands out by default: a round trip per request
        // (measured: 10% of the status endpoint's throughput). A connection in steady use
        // is known alive; one that sat idle, as every connection does across a Postgres
        // restart in a quiet period, is checked and replaced when dead; so is every
        // connection for a while after this process saw an outage.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                let trusted = meta.idle_for < PING_AFTER_IDLE && !outage_recent();
                Ok(trusted || conn.ping().await.is_ok())
            })
        })
        .after_connect(move |conn, _| {
            let statement_timeout = statement_timeout.clone();
            Box::pin(async move {
                conn.execute(statement_timeout.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    log_budget(&pool, cfg.max_connections).await;
    Ok(pool)
}

/// Every process has a pool of its own, and Postgres refuses connections past its
/// `max_connections`: the sum over the deployment is what operators size, so each
/// process says its share and the server's limit in one line at start.
async fn log_budget(pool: &PgPool, pool_size: u32) {
    let setting = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
            .fetch_one(pool)
            .await
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
    };
    let server = setting("max_connections").await;
    let reserved = setting("superuser_reserved_connections").await;
    let usable = server.map(|max| max.saturating_sub(reserved.unwrap_or(0)));
    tracing::info!(
        max_connections = pool_size,
        server_max_connections = server,
        server_usable_connections = usable,
        "Postgres pool: up to {pool_size} connections in this process, of {} the server \
         takes from non-superusers; the deployment needs api + schedulers + workers, each \
         × its pool, plus 4 per running stasisctl, within that (docs/operations.md, \
         Connections)",
        usable.map_or_else(|| "?".to_owned(), |u| u.to_string()),
    );
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    // A migration may rewrite a large table: exempt from `database.statement_timeout`.
    // The connection leaves the pool afterwards instead of going back without the limit.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    let mut conn = conn.detach();
    reworded::adopt(&mut conn).await?;
    MIGRATOR.run(&mut conn).await
}

/// A read-only transaction on one snapshot: a page and its total, read in two
/// statements, then agree even while workers move jobs between states.
pub(crate) async fn snapshot(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
