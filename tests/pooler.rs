//! Connection poolers in front of Postgres, with Debian's PgBouncer of the test's own
//! (scripts/test.sh installs it). In session mode the stack works through one as
//! through Postgres itself: a worker syncs a mirror the API was asked to sync, and each
//! connection keeps `database.statement_timeout`. In transaction mode sqlx's prepared
//! statements break (shown here), so every process refuses such a pooler at start with
//! what to do instead.
//!
//! Each process logs its share of Postgres's connections at start, read through the
//! pooler from Postgres itself.

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use stasis_shared::config::DatabaseConfig;
use stasis_shared::db;
use stasis_testkit::git::{assert_mirrors, free_port, Upstream};
use stasis_testkit::pooler::PgBouncer;
use stasis_testkit::process::{binary, Proc};
use stasis_testkit::services::PrivatePostgres;
use stasis_testkit::TestEnv;
use uuid::Uuid;

/// In every URL here; PgBouncer's trust authentication never asks for it, and no output
/// may show it.
const PASSWORD: &str = "pw-never-shown-2209";

fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

/// Why transaction mode is refused: sqlx prepares a named statement in one message
/// round and binds it in the next, and the pooler may hand the two to different server
/// connections; with the statement cache off, names still repeat across client
/// connections. Eight clients on four server connections fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_prepared_statements_break_through_a_transaction_pooler() {
    let pg = PrivatePostgres::start();
    let bouncer = PgBouncer::transaction_mode(pg.port);
    for cache in [100, 0] {
        let options = PgConnectOptions::from_str(&bouncer.url("postgres"))
            .expect("pooler url")
            .statement_cache_capacity(cache);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connect through the pooler");
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    for j in 0..20i32 {
                        let sum = sqlx::query_scalar::<_, i32>("SELECT $1::int + $2::int")
                            .bind(i)
                            .bind(j)
                            .fetch_one(&pool)
                            .await;
                        if let Err(e) = sum {
                            errors.push(e.to_string());
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut errors = Vec::new();
        for client in clients {
            errors.extend(client.await.expect("client task"));
        }
        assert!(
            errors.iter().any(|e| e.contains("prepared statement")),
            "statement cache {cache}: {errors:?}"
        );
    }
}

#[tokio::test]
async fn connecting_through_a_transaction_pooler_is_refused_with_the_fix() {
    let pg = PrivatePostgres::start();
    let bouncer = PgBouncer::transaction_mode(pg.port);
    let cfg = DatabaseConfig {
        url: with_password(&bouncer.url("postgres")),
        ..DatabaseConfig::default()
    };
    let err = db::connect(&cfg).await.expect_err("a transaction pooler");
    let msg = err.to_string();
    assert!(msg.contains("pooler in transaction mode"), "{msg}");
    assert!(msg.contains("pool_mode = session"), "{msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");

    // the same Postgres without the pooler: accepted
    let direct = DatabaseConfig {
        url: pg.admin_url(),
        ..DatabaseConfig::default()
    };
    db::connect(&direct).await.expect("Postgres itself");
}

/// Runs `program` with `args` and `vars` until it exits; its status and output.
fn exit_of(program: &str, args: &[&str], vars: &[(&str, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("process dir");
    let log = dir.path().join("out.log");
    let file = std::fs::File::create(&log).expect("process log");
    let mut child = Command::new(binary(program))
        .args(args)
        .env("STASIS_STORAGE_ROOT", dir.path().join("mirrors"))
        .env("STASIS_SECRETS_KEY", "ab".repeat(32))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{program} still running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[tokio::test]
async fn every_process_refuses_a_transaction_pooler_at_start() {
    let pg = PrivatePostgres::start();
    let bouncer = PgBouncer::transaction_mode(pg.port);
    let url = with_password(&bouncer.url("postgres"));
    let vars = [("STASIS_DATABASE_URL", url)];
    for (program, args) in [
        ("stasis-api", &[][..]),
        ("stasis-worker", &[][..]),
        ("stasis-scheduler", &[][..]),
        ("stasisctl", &["migrate"][..]),
    ] {
        let (success, out) = exit_of(program, args, &vars);
        assert!(!success, "{program} started:\n{out}");
        assert!(
            out.contains("pooler in transaction mode"),
            "{program}:\n{out}"
        );
        assert!(out.contains("pool_mode = session"), "{program}:\n{out}");
        assert!(!out.contains(PASSWORD), "{program}:\n{out}");
    }
}

#[tokio::test]
async fn a_pooler_refusing_sqlx_startup_parameters_is_named_with_its_setting() {
    let pg = PrivatePostgres::start();
    let bouncer = PgBouncer::session_mode_refusing_startup_parameters(pg.port);
    let cfg = DatabaseConfig {
        url: bouncer.url("postgres"),
        ..DatabaseConfig::default()
    };
    let msg = db::connect(&cfg)
        .await
        .expect_err("extra_float_digits refused")
        .to_string();
    assert!(msg.contains("unsupported startup parameter"), "{msg}");
    assert!(
        msg.contains("ignore_startup_parameters = extra_float_digits"),
        "{msg}"
    );
}

/// Through a session-mode PgBouncer: migrations, the API and a worker, and a mirror
/// synced on the API's "Sync now".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_session_pooler_the_api_and_a_worker_sync_a_mirror() {
    let pg = PrivatePostgres::start();
    let bouncer = PgBouncer::session_mode(pg.port);
    // the test's database is made, migrated and used through the pooler
    let env = TestEnv::with_postgres(&bouncer.url("postgres")).await;
    assert!(
        bouncer.log_text().contains(&format!("db={}", env.database)),
        "the test's database was not reached through the pooler:\n{}",
        bouncer.log_text()
    );
    // the limit each connection sets once holds on the connections the pool hands out
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&env.pool)
        .await
        .expect("read statement_timeout");
    assert_eq!(timeout, "10s");

    let (owner, token) = env.user("pat", false).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.commit("through the pooler");
    env.mirror(&owner, "m", &up.url()).await;
    let port = free_port();
    let mut api = Proc::spawn(
        &env,
        "stasis-api",
        "api.log",
        &[("STASIS_API_LISTEN", format!("127.0.0.1:{port}"))],
    );
    let mut worker = Proc::spawn(&env, "stasis-worker", "worker.log", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        api.assert_running("api");
        assert!(Instant::now() < deadline, "no API:\n{}", api.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/repos/pat/m/sync"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST sync");
    assert_eq!(answer.status(), 202, "{}", api.log_text());
    let body: serde_json::Value = answer.json().await.expect("sync answer");
    let job = Uuid::parse_str(body["job_id"].as_str().expect("job_id")).expect("a job id");
    let job = env.finished(job, Duration::from_secs(60)).await;
    assert_eq!(job.state.as_str(), "done", "{}", worker.log_text());
    assert_mirrors(&env.mirror_path("pat", "m"), &up);
    api.assert_running("api");
    worker.assert_running("worker");
    // the connection budget each process logs at start: its pool, and what Postgres
    // (max_connections 200, 3 reserved for superusers) leaves the deployment
    assert!(
        worker
            .log_text()
            .contains("Postgres pool: up to 10 connections in this process, of 197"),
        "{}",
        worker.log_text()
    );
}
