//! `stasisctl` as operators run it (the built binary, configured by `STASIS_*`
//! variables), on jobs run through the real pipeline.

use std::time::Duration;

use serde_json::Value;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::Upstream;
use stasis_testkit::TestEnv;
use uuid::Uuid;

// Beside this file rather than in tests/ so they are part of this binary, not their own.
#[path = "cli/admin.rs"]
mod admin;
#[path = "cli/environment.rs"]
mod environment;
#[path = "cli/jobs.rs"]
mod jobs;
#[path = "cli/wait.rs"]
mod wait;

const WAIT: Duration = Duration::from_secs(60);

struct Ctl<'a> {
    env: &'a TestEnv,
}

impl Ctl<'_> {
    /// Runs stasisctl; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
            .args(args)
            .env_clear()
            .envs(self.env.env_vars())
            .output()
            .await
            .expect("run stasisctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "stasisctl {args:?} failed: {stderr}");
        stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }
}

fn ids(list: &Value) -> Vec<Uuid> {
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_pipe_and_an_unreachable_database_end_quietly() {
    let env = TestEnv::new().await;
    let (alice, _) = env.user("alice", false).await;
    let good = Upstream::create(env.dir.path().join("good"));
    for i in 0..3 {
        let repo = env.mirror(&alice, &format!("m{i}"), &good.url()).await;
        env.enqueue(repo, SyncReason::Manual).await;
    }

    // `stasisctl jobs list | head -0`: the reader is gone before the first write.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
        .args(["jobs", "list"])
        .env_clear()
        .envs(env.env_vars())
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stasisctl");
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A port nothing listens on, with a password in the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
        .args(["jobs", "list"])
        .env_clear()
        .envs(env.env_vars())
        .env(
            "STASIS_DATABASE_URL",
            format!("postgres://stasis:hunter2@127.0.0.1:{port}/stasis"),
        )
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&format!("127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("  caused by: "), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
        .args(["queue"])
        .env_clear()
        .envs(env.env_vars())
        .env(
            "STASIS_REDIS_URL",
            format!("redis://:hunter2@127.0.0.1:{port}"),
        )
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("Redis at 127.0.0.1:{port}")) && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

/// `stasisctl` over TLS to both backends: the CA of `database.url`'s `sslrootcert` and of
/// `redis.ca_file` is the one it checks against; another CA's certificate is refused,
/// naming the server but not the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_configured_ca_is_trusted_and_another_refused() {
    use stasis_testkit::services::{PrivatePostgres, PrivateRedis};
    use stasis_testkit::tls::TestCa;

    let ca = TestCa::new("Stasis test CA");
    let other = TestCa::new("Another CA");
    let pg = PrivatePostgres::start_tls(&ca.issue("postgres", &["localhost"]));
    let redis = PrivateRedis::start_tls(&ca.issue("redis", &["localhost"]), &ca.cert, false);
    let admin = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.cert.display()
    );
    let env = TestEnv::with_services_tls(
        &admin,
        &format!("rediss://localhost:{}", redis.port),
        &ca.cert,
    )
    .await;
    let run = |extra: Vec<(&'static str, String)>| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
            .args(["queue", "--json"])
            .env_clear()
            .envs(env.env_vars())
            .envs(extra)
            .output()
    };

    let out = run(vec![]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let status: Value = serde_json::from_slice(&out.stdout).expect("queue status JSON");
    assert!(status.is_object(), "{status}");

    let out = run(vec![
        (
            "STASIS_REDIS_URL",
            format!("rediss://:hunter2@localhost:{}", redis.port),
        ),
        ("STASIS_REDIS_CA_FILE", other.cert.display().to_string()),
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("Redis at localhost:{}", redis.port))
            && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
