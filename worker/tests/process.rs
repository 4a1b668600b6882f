//! The `stasis-worker` binary as operators run it: killed, stopped, misconfigured, and
//! facing a Redis restart or a poison payload.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apalis::prelude::TaskSink;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::{assert_mirrors, free_port, wait_for_port, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

fn spawn_worker(env: &TestEnv, log: &str) -> Child {
    let log = std::fs::File::create(env.dir.path().join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stasis-worker")
}

/// Waits for the first run of `job` to start and returns the worker that runs it.
async fn running_on(env: &TestEnv, job: uuid::Uuid) -> String {
    eventually("the sync to start", WAIT, || async {
        env.runs(job).await.first().map(|r| r.worker.clone())
    })
    .await
}

/// A mirror whose fetch takes a few seconds over a throttled loopback link.
async fn slow_mirror(
    env: &TestEnv,
    bytes: usize,
) -> (Upstream, GitDaemon, ThrottledProxy, uuid::Uuid) {
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    up.add_blob("big.bin", bytes);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 400_000).await;
    let (owner, _) = env.user("erin", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    (up, daemon, proxy, repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_fetch_the_job_completes_on_another_worker() {
    let env = TestEnv::new().await;
    let (up, _daemon, _proxy, repo) = slow_mirror(&env, 2_000_000).await;
    let mut first = spawn_worker(&env, "first.log");
    let job = env.enqueue(repo, SyncReason::Import).await;
    let victim = running_on(&env, job).await;
    let mut second = spawn_worker(&env, "second.log");

    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().expect("SIGKILL the worker"); // Child::kill sends SIGKILL
    first.wait().unwrap();
    let killed_at = Instant::now();

    let finished = env.finished(job, WAIT).await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(finished.state, "done");
    let runs = env.runs(job).await;
    assert_eq!(
        runs.first().map(|r| r.worker.as_str()),
        Some(victim.as_str())
    );
    assert_eq!(runs[0].outcome.as_deref(), Some("abandoned"), "{runs:?}");
    let last = runs.last().unwrap();
    assert_eq!(last.outcome.as_deref(), Some("success"));
    assert_ne!(last.worker, victim);
    assert_eq!(env.repo(repo).await.sync_status, "success");
    assert_mirrors(&env.mirror_path("erin", "up"), &up);
    second.kill().ok();
    second.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_in_flight_sync_finish_then_exits_zero() {
    let env = TestEnv::new().await;
    let (up, _daemon, _proxy, repo) = slow_mirror(&env, 1_200_000).await;
    let mut worker = spawn_worker(&env, "worker.log");
    let job = env.enqueue(repo, SyncReason::Import).await;
    running_on(&env, job).await;

    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = eventually("the worker to exit", WAIT, || {
        let exited = worker.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "worker exited with {status}");
    // it exited only after recording the sync it had in flight
    let job = env.job(job).await;
    assert_eq!(job.state, "done");
    assert_eq!(env.runs(job.id).await.len(), 1);
    assert_mirrors(&env.mirror_path("erin", "up"), &up);
}

#[tokio::test]
async fn bad_config_stops_the_process_naming_the_key() {
    for (key, value, named) in [
        ("STASIS_SYNC_TIMEOUT", "soon", "sync.timeout"),
        ("STASIS_WORKER_CONCURRENCY", "0", "worker.concurrency"),
        ("STASIS_MIRROR_SYNC_INTERVALL", "1h", "sync_intervall"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
            .env(key, value)
            .output()
            .expect("run stasis-worker");
        assert!(!out.status.success(), "{key}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains(named), "{key}={value}: {stderr}");
    }
}

/// A Redis of this test's own, so restarting it disturbs no other test.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_for_port(port, "redis-server");
        Self { port, child }
    }

    fn stop(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_does_not_stop_the_worker() {
    let redis = PrivateRedis::start(free_port());
    let env = TestEnv::with_redis(&format!("redis://127.0.0.1:{}", redis.port)).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("frank", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let mut worker = spawn_worker(&env, "worker.log");

    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, "done");

    // Redis goes away and comes back empty (no persistence): queue and lock counters gone.
    let port = redis.port;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let redis = PrivateRedis::start(port);

    up.commit("after the restart");
    let enqueuer = env.enqueuer();
    let job = eventually("Redis to accept pushes again", WAIT, || {
        let enqueuer = enqueuer.clone();
        async move {
            enqueuer
                .enqueue(repo, SyncReason::Manual)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(env.finished(job.job_id, WAIT).await.state, "done");
    assert_mirrors(&env.mirror_path("frank", "up"), &up);
    assert!(worker.try_wait().unwrap().is_none(), "worker process died");
    worker.kill().ok();
    worker.wait().ok();
    redis.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_payload_does_not_stop_the_queue() {
    let env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("grace", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;

    // a payload that is not a SyncMirror, on the same queue
    let mut poison = apalis_redis::RedisStorage::<serde_json::Value>::new(env.redis.clone())
        .with_config(env.enqueuer().storage().get_config().clone());
    poison
        .push(serde_json::json!({ "not": "a job" }))
        .await
        .unwrap();
    let mut worker = spawn_worker(&env, "worker.log");

    let job = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(job, WAIT).await.state, "done");
    assert_mirrors(&env.mirror_path("grace", "up"), &up);
    assert!(worker.try_wait().unwrap().is_none(), "worker process died");
    worker.kill().ok();
    worker.wait().ok();
}
