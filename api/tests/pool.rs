//! The Postgres pool skips sqlx's ping before every checkout (a round trip per request)
//! and pings only connections that sat idle: a connection killed while idle, as across
//! a Postgres restart, is replaced without failing the request that gets it.

use std::time::Duration;

use stasis_shared::db;
use stasis_testkit::{eventually, TestEnv};

async fn backend_pid(pool: &sqlx::PgPool) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("query on the pool")
}

#[tokio::test]
async fn a_connection_killed_while_idle_is_replaced_before_use() {
    let env = TestEnv::new().await;
    let mut cfg = env.cfg.database.clone();
    cfg.max_connections = 1;
    let pool = db::connect(&cfg).await.expect("pool");
    let first = backend_pid(&pool).await;
    assert_eq!(backend_pid(&pool).await, first, "one connection, reused");

    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&env.pool)
        .await
        .expect("terminate");
    assert!(killed);
    eventually(
        "the killed backend to exit",
        Duration::from_secs(10),
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(first)
                    .fetch_one(&env.pool)
                    .await
                    .expect("read pg_stat_activity");
            (left == 0).then_some(())
        },
    )
    .await;
    // The idleness is the condition under test, not a wait for an event: a connection
    // idle for less than the pool's ping threshold (1 s) is handed out unchecked.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = backend_pid(&pool).await;
    assert_ne!(second, first, "the dead connection was replaced");
}
