//! Postgres and Redis over TLS, as managed offerings require. A connection checks the
//! server's certificate against the CA the configuration names (`sslrootcert` in
//! `database.url` with `sslmode=verify-full`, `redis.ca_file` for `rediss://`) and the
//! server's name; a certificate from another CA or for another name is refused with an
//! error that says so, and a process stopped by one never prints the URL's password.
//! Every server here is a test's own, with certificates from a CA the test makes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stasis_shared::config::{DatabaseConfig, RedisConfig};
use stasis_shared::db;
use stasis_shared::domain::SyncReason;
use stasis_shared::queue;
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::process::{binary, Proc};
use stasis_testkit::services::{PrivatePostgres, PrivateRedis};
use stasis_testkit::tls::TestCa;
use stasis_testkit::TestEnv;

/// In every URL that carries a password: no output may show it.
const PASSWORD: &str = "pw-never-shown-7431";

/// `postgres://` to `host` of `pg` with full verification against `ca`.
fn pg_url(pg: &PrivatePostgres, host: &str, database: &str, ca: &Path) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{}/{database}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.display()
    )
}

fn database(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        ..DatabaseConfig::default()
    }
}

fn rediss(redis: &PrivateRedis, ca: &Path) -> RedisConfig {
    RedisConfig {
        url: format!("rediss://localhost:{}", redis.port),
        ca_file: Some(ca.to_owned()),
        ..RedisConfig::default()
    }
}

async fn set_and_get(cfg: &RedisConfig) -> redis::RedisResult<String> {
    let mut conn = queue::connect_redis(cfg).await?;
    redis::cmd("SET")
        .arg("tls-probe")
        .arg("over tls")
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("GET")
        .arg("tls-probe")
        .query_async(&mut conn)
        .await
}

#[tokio::test]
async fn postgres_with_verify_full_and_the_ca_migrates_and_answers_over_tls() {
    let ca = TestCa::new("Stasis test CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    let cfg = database(pg_url(&pg, "localhost", "postgres", &ca.cert));

    let pool = db::connect(&cfg).await.expect("connect with verify-full");
    db::migrate(&pool).await.expect("migrations over TLS");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("query over TLS");
    assert_eq!(applied as usize, db::MIGRATOR.iter().count());
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("read pg_stat_ssl");
    assert!(encrypted, "the connection is not encrypted");
}

#[tokio::test]
async fn postgres_refuses_a_certificate_from_another_ca() {
    let ca = TestCa::new("Stasis test CA");
    let other = TestCa::new("Another CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    let cfg = database(pg_url(&pg, "localhost", "postgres", &other.cert));

    let err = db::connect(&cfg)
        .await
        .expect_err("a certificate of another CA");
    let msg = err.to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");
}

#[tokio::test]
async fn postgres_refuses_a_certificate_for_another_name() {
    let ca = TestCa::new("Stasis test CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    // the right CA, but the certificate names `localhost`, not 127.0.0.1
    let cfg = database(pg_url(&pg, "127.0.0.1", "postgres", &ca.cert));

    let err = db::connect(&cfg)
        .await
        .expect_err("a certificate for another name");
    let msg = err.to_string();
    assert!(msg.contains("not valid for name"), "{msg}");
}

#[tokio::test]
async fn postgres_that_checks_clients_takes_the_certificate_in_the_url() {
    let ca = TestCa::new("Stasis test CA");
    let pg = PrivatePostgres::start_tls_checking_clients(
        &ca.issue("postgres", &["localhost"]),
        &ca.cert,
    );
    let url = pg_url(&pg, "localhost", "postgres", &ca.cert);

    let err = db::connect(&database(url.clone()))
        .await
        .expect_err("no client certificate: refused");
    assert!(err.to_string().contains("certificate"), "{err}");

    // `cert` authentication: the certificate names the user it logs in as
    let client = ca.issue("client", &["postgres"]);
    let url = format!(
        "{url}&sslcert={}&sslkey={}",
        client.cert.display(),
        client.key.display()
    );
    let pool = db::connect(&database(url))
        .await
        .expect("connect with a client certificate");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .expect("query with a client certificate");
    assert_eq!(user, "postgres");
}

#[tokio::test]
async fn redis_over_tls_with_the_ca_carries_commands() {
    let ca = TestCa::new("Stasis test CA");
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, false);

    let got = set_and_get(&rediss(&redis, &ca.cert))
        .await
        .expect("commands over rediss://");
    assert_eq!(got, "over tls");
}

#[tokio::test]
async fn redis_refuses_a_certificate_from_another_ca_or_for_another_name() {
    let ca = TestCa::new("Stasis test CA");
    let other = TestCa::new("Another CA");
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, false);

    let err = set_and_get(&rediss(&redis, &other.cert))
        .await
        .expect_err("a certificate of another CA");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let mut by_address = rediss(&redis, &ca.cert);
    by_address.url = format!("rediss://127.0.0.1:{}", redis.port);
    let err = set_and_get(&by_address)
        .await
        .expect_err("a certificate for another name");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // without redis.ca_file: the system's trust store, which knows no test CA
    let mut system = rediss(&redis, &ca.cert);
    system.ca_file = None;
    let err = set_and_get(&system)
        .await
        .expect_err("a certificate the system does not trust");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn redis_that_checks_clients_takes_the_configured_client_certificate() {
    let ca = TestCa::new("Stasis test CA");
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, true);
    let mut cfg = rediss(&redis, &ca.cert);

    set_and_get(&cfg)
        .await
        .expect_err("no client certificate: refused");

    let client = ca.issue("client", &["stasis-worker"]);
    cfg.client_cert_file = Some(client.cert);
    cfg.client_key_file = Some(client.key);
    let got = set_and_get(&cfg)
        .await
        .expect("commands with a client certificate");
    assert_eq!(got, "over tls");
}

#[tokio::test]
async fn redis_tls_files_without_rediss_are_refused_by_name() {
    let ca = TestCa::new("Stasis test CA");
    let cfg = RedisConfig {
        url: "redis://127.0.0.1:1".into(),
        ca_file: Some(ca.cert.clone()),
        ..RedisConfig::default()
    };
    let err = queue::redis_client(&cfg).expect_err("redis.ca_file on redis://");
    assert!(err.to_string().contains("rediss://"), "{err}");

    let cfg = RedisConfig {
        url: "rediss://localhost:1".into(),
        ca_file: Some(ca.cert.with_file_name("missing.crt")),
        ..RedisConfig::default()
    };
    let err = queue::redis_client(&cfg).expect_err("a missing redis.ca_file");
    assert!(err.to_string().contains("redis.ca_file"), "{err}");
}

/// The stack over TLS to both backends: a worker process takes a sync from `rediss://`
/// and records it in Postgres over verify-full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_syncs_a_mirror_over_tls_to_both_backends() {
    let ca = TestCa::new("Stasis test CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, false);
    let env = TestEnv::with_services_tls(
        &pg_url(&pg, "localhost", "postgres", &ca.cert),
        &format!("rediss://localhost:{}", redis.port),
        &ca.cert,
    )
    .await;
    let (owner, _) = env.user("pat", false).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.commit("over tls");
    let repo = env.mirror(&owner, "m", &up.url()).await;
    let job = env.enqueue(repo, SyncReason::Import).await;

    let mut worker = Proc::spawn(&env, "stasis-worker", "worker.log", &[]);
    let job = env.finished(job, Duration::from_secs(60)).await;
    worker.assert_running("worker");
    assert_eq!(job.state.as_str(), "done", "{}", worker.log_text());
    assert_mirrors(&env.mirror_path("pat", "m"), &up);
}

/// Runs `stasis-worker` with `vars` until it exits; its status and output.
fn worker_exit(vars: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("worker dir");
    let log = dir.path().join("worker.log");
    let file = std::fs::File::create(&log).expect("worker log");
    let mut child = Command::new(binary("stasis-worker"))
        .env("STASIS_STORAGE_ROOT", dir.path().join("mirrors"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log"))
        .stderr(file)
        .spawn()
        .expect("start stasis-worker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll worker") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "stasis-worker still running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

#[tokio::test]
async fn a_process_refused_a_certificate_says_so_without_the_password() {
    let ca = TestCa::new("Stasis test CA");
    let other = TestCa::new("Another CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, false);

    let (status, out) = worker_exit(&[(
        "STASIS_DATABASE_URL",
        pg_url(&pg, "localhost", "postgres", &other.cert),
    )]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("connecting to Postgres"), "{out}");
    assert!(out.contains("UnknownIssuer"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");

    let (status, out) = worker_exit(&[
        (
            "STASIS_DATABASE_URL",
            pg_url(&pg, "localhost", "postgres", &ca.cert),
        ),
        (
            "STASIS_REDIS_URL",
            format!("rediss://:{PASSWORD}@localhost:{}", redis.port),
        ),
        ("STASIS_REDIS_CA_FILE", other.cert.display().to_string()),
    ]);
    assert!(!status.success(), "{out}");
    assert!(out.contains("connecting to Redis"), "{out}");
    assert!(out.contains("UnknownIssuer"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
}
