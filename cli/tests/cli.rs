//! `stasisctl` as operators run it (the built binary, configured by `STASIS_*`
//! variables), on jobs seeded through the real pipeline.

use std::time::Duration;

use serde_json::Value;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::TestEnv;
use uuid::Uuid;

// Beside this file rather than in tests/ so it is part of this binary, not its own.
#[path = "cli/admin.rs"]
mod admin;

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
async fn operators_inspect_retry_and_discard_jobs_from_the_cli() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let good = Upstream::create(env.dir.path().join("good"));
    let later = env.dir.path().join("later");

    for args in [
        vec!["--help"],
        vec!["jobs", "--help"],
        vec!["jobs", "list", "--help"],
        vec!["mirrors", "--help"],
        vec!["queue", "--help"],
    ] {
        let help = ctl.ok(&args).await;
        assert!(help.contains("Usage: stasisctl"), "{args:?}: {help}");
    }

    // Discard a job waiting in the queue.
    let parked_repo = env.mirror(&alice, "parked", &good.url()).await;
    let parked = env.enqueue(parked_repo, SyncReason::Manual).await;
    let pending = ctl
        .json(&["jobs", "list", "--state", "pending", "--json"])
        .await;
    assert_eq!(ids(&pending), [parked]);
    let said = ctl.ok(&["jobs", "discard", &parked.to_string()]).await;
    assert!(
        said.contains("was pending; 1 queued deliveries removed"),
        "{said}"
    );
    let dead = ctl
        .json(&["jobs", "list", "--state", "dead", "--json"])
        .await;
    assert_eq!(ids(&dead), [parked]);

    // One good, one failing mirror through a real worker.
    let worker = env.spawn_worker();
    let good_repo = env.mirror(&alice, "good", &good.url()).await;
    let broken_repo = env
        .mirror(&alice, "broken", &format!("file://{}", later.display()))
        .await;
    let good_job = env.enqueue(good_repo, SyncReason::Import).await;
    let broken_job = env.enqueue(broken_repo, SyncReason::Import).await;
    assert_eq!(env.finished(good_job, WAIT).await.state, "done");
    assert_eq!(env.finished(broken_job, WAIT).await.state, "failed");

    let failed = ctl
        .json(&["jobs", "list", "--state", "failed", "--json"])
        .await;
    assert_eq!(ids(&failed), [broken_job]);
    assert_eq!(failed["jobs"][0]["repo"], "alice/broken");
    let by_repo = ctl
        .json(&["jobs", "list", "--repo", "alice/good", "--json"])
        .await;
    assert_eq!(ids(&by_repo), [good_job]);
    let table = ctl.ok(&["jobs", "list"]).await;
    assert!(
        table.contains("LAST ERROR") && table.contains("alice/broken"),
        "{table}"
    );
    assert!(table.contains("3 of 3 jobs"), "{table}");

    let shown = ctl
        .json(&["jobs", "show", &broken_job.to_string(), "--json"])
        .await;
    assert_eq!(shown["state"], "failed");
    assert_eq!(shown["attempts"][0]["error_kind"], "not_found", "{shown}");
    let shown = ctl.ok(&["jobs", "show", &broken_job.to_string()]).await;
    assert!(
        shown.contains("OUTCOME") && shown.contains("failed"),
        "{shown}"
    );
    let (ok, _, err) = ctl
        .run(&["jobs", "show", &Uuid::new_v4().to_string()])
        .await;
    assert!(!ok && err.contains("no job"), "{err}");
    let (ok, _, err) = ctl.run(&["jobs", "list", "--state", "stuck"]).await;
    assert!(!ok && err.contains("stuck"), "{err}");

    let failing = ctl.json(&["mirrors", "list", "--failed", "--json"]).await;
    let names: Vec<_> = failing["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["full_name"].clone())
        .collect();
    assert_eq!(names, ["alice/broken"]);

    // Retry once the upstream exists; a done job cannot be retried.
    let fixed = Upstream::create(later);
    ctl.ok(&["jobs", "retry", &broken_job.to_string()]).await;
    let job = env.finished(broken_job, WAIT).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    assert_mirrors(&env.mirror_path("alice", "broken"), &fixed);
    let (ok, _, err) = ctl.run(&["jobs", "retry", &broken_job.to_string()]).await;
    assert!(
        !ok && err.contains("is done; it cannot be retried"),
        "{err}"
    );
    let history = ctl
        .json(&["mirrors", "history", "alice/broken", "--json"])
        .await;
    let outcomes: Vec<_> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["success", "failed"], "newest first");

    // Sync now, from the CLI.
    let said = ctl.ok(&["mirrors", "sync", "alice/good"]).await;
    let job: Uuid = said
        .split_whitespace()
        .last()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {said:?}"));
    assert_eq!(env.finished(job, WAIT).await.state, "done");
    let (ok, _, err) = ctl.run(&["mirrors", "sync", "alice/nothing"]).await;
    assert!(!ok && err.contains("no mirror alice/nothing"), "{err}");

    // The fleet at a glance.
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["jobs"]["done"], 3, "{queue}");
    assert_eq!(queue["jobs"]["dead"], 1, "{queue}");
    assert_eq!(queue["throughput"]["last_1h"], 4, "{queue}");
    assert_eq!(queue["redis"]["active"], 0, "{queue}");
    let workers = ctl.json(&["workers", "--json"]).await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    assert!(workers["workers"][0]["host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    let table = ctl.ok(&["queue"]).await;
    assert!(table.contains("workers alive: 1"), "{table}");

    ctl.ok(&["scheduler", "pause"]).await;
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["scheduler"]["paused"], true);
    ctl.ok(&["scheduler", "resume"]).await;
    let said = ctl.ok(&["mirror", "interval", "30m"]).await;
    assert!(said.contains("30m (from override)"), "{said}");
    let (ok, _, _) = ctl.run(&["mirror", "interval", "5s"]).await;
    assert!(!ok, "intervals under a minute are refused");
    let said = ctl.ok(&["mirrors", "interval", "reset"]).await;
    assert!(said.contains("(from config)"), "{said}");

    worker.stop().await;
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
