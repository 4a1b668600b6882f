//! Whether `database.url` reaches Postgres through a pooler the services cannot work
//! through. A pooler in transaction (or statement) mode hands a client's next
//! transaction to any server connection; the services keep state per connection:
//! sqlx prepares named statements on a connection and binds them in a later message
//! (`prepared statement "sqlx_s_1" does not exist` / `already exists` through PgBouncer,
//! even with sqlx's statement cache off), `database.statement_timeout` is set once per
//! connection, and migrations hold a session-level advisory lock. Such a pooler is
//! refused at start with what to do instead, not left to fail one query in many.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

/// What an operator reads when a transaction-mode pooler is detected.
pub const TRANSACTION_POOLER: &str = "database.url reaches Postgres through a connection \
pooler in transaction mode (one client connection was served by different Postgres \
sessions): the services keep per-connection state such a pooler does not carry across \
transactions (prepared statements, database.statement_timeout, the migrations' advisory \
lock). Point database.url at Postgres itself, or at a pooler in session mode \
(PgBouncer: pool_mode = session); see docs/operations.md, Connections";

/// Refuses a pooler in transaction mode. Two connections at once, three questions in
/// the simple protocol (no prepared statement, so they pass any pooler): which Postgres
/// backend serves the first, the second, then the first again. Postgres itself and a
/// session-mode pooler give each open connection its own backend for its lifetime. A
/// transaction pooler returns the first's backend to its pool after each statement, and
/// PgBouncer hands out the most recently used one next: the second connection gets it,
/// or the first gets another one.
pub async fn refuse_transaction_pooler(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let mut first = open(options).await?;
    let mut second = open(options).await?;
    let a = backend(&mut first).await?;
    let b = backend(&mut second).await?;
    let again = backend(&mut first).await?;
    let _ = second.close().await;
    let _ = first.close().await;
    if a == b || a != again {
        return Err(sqlx::Error::Configuration(TRANSACTION_POOLER.into()));
    }
    Ok(())
}

async fn open(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(options)
        .await
        .map_err(unsupported_startup_parameter)
}

async fn backend(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// PgBouncer refuses a connection whose startup packet carries a parameter it does not
/// track (`unsupported startup parameter: extra_float_digits`, which sqlx sends); the
/// error alone does not say where the fix goes.
fn unsupported_startup_parameter(e: sqlx::Error) -> sqlx::Error {
    match &e {
        sqlx::Error::Database(db) if db.message().starts_with("unsupported startup parameter") => {
            sqlx::Error::Configuration(
                format!(
                    "{}: database.url reaches a connection pooler that refuses a startup \
                     parameter sqlx sends (PgBouncer: add `ignore_startup_parameters = \
                     extra_float_digits` to pgbouncer.ini); see docs/operations.md, Connections",
                    db.message()
                )
                .into(),
            )
        }
        _ => e,
    }
}
