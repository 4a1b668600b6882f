//! The `stasis-worker` binary as operators run it: killed, stopped, misconfigured, and
//! facing a Redis restart or a poison payload.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apalis::prelude::TaskSink;
use stasis_shared::db::workers;
use stasis_shared::domain::{ErrorKind, JobState, Lane, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::services::PrivateRedis;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(90);

/// The worker's logs (stdout) and anything it prints on stderr go to `log` in the
/// test's directory.
fn spawn_worker(env: &TestEnv, log: &str) -> Child {
    let log = std::fs::File::create(env.dir.path().join(log)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
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
    // the second worker is up and heartbeating before the first dies mid-fetch
    eventually("the second worker to register", WAIT, || async {
        let alive = workers::alive(&env.pool, Duration::from_secs(30))
            .await
            .ok()?;
        (alive.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        env.job(job).await.state,
        JobState::Running,
        "the sync ended before the kill: slow its upstream further"
    );
    first.kill().expect("SIGKILL the worker"); // Child::kill sends SIGKILL
    first.wait().unwrap();
    let killed_at = Instant::now();

    let finished = env.finished(job, WAIT).await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(finished.state, JobState::Done);
    let runs = env.runs(job).await;
    assert_eq!(
        runs.first().map(|r| r.worker.as_str()),
        Some(victim.as_str())
    );
    assert_eq!(runs[0].outcome, Some(RunOutcome::Abandoned), "{runs:?}");
    let last = runs.last().unwrap();
    assert_eq!(last.outcome, Some(RunOutcome::Success));
    assert_ne!(last.worker, victim);
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Success);
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
    assert_eq!(job.state, JobState::Done);
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

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn an_unreachable_backend_stops_the_process_naming_it() {
    let env = TestEnv::new().await;
    let closed = closed_port();
    for (key, url, named) in [
        (
            "STASIS_DATABASE_URL",
            format!("postgres://stasis@{closed}/stasis"),
            "connecting to postgres",
        ),
        (
            "STASIS_REDIS_URL",
            format!("redis://{closed}"),
            "connecting to redis",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
            .envs(env.env_vars())
            .env(key, &url)
            .output()
            .expect("run stasis-worker");
        assert!(!out.status.success(), "{key}={url} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains(named), "{key}={url}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_does_not_stop_the_worker() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("frank", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let mut worker = spawn_worker(&env, "worker.log");

    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);

    // Redis goes away and comes back empty (no persistence): queue and lock counters gone.
    let log = env.dir.path().join("worker.log");
    // the worker says an outage began once (a consumer's failure or its liveness beat's)
    let stopped = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.matches("redis unreachable").count()
    };
    let before = stopped();
    redis.kill();
    // back only once the worker has seen it gone: a queue consumer failed and restarts
    eventually("the worker to notice Redis is gone", WAIT, || {
        let noticed = stopped() > before;
        async move { noticed.then_some(()) }
    })
    .await;
    redis.start_again();

    up.commit("after the restart");
    let jobs = env.jobs();
    let job = eventually("Redis to accept pushes again", WAIT, || {
        let jobs = jobs.clone();
        async move { jobs.request(repo, SyncReason::Manual).await.ok().flatten() }
    })
    .await;
    assert_eq!(env.finished(job.job_id, WAIT).await.state, JobState::Done);
    assert_mirrors(&env.mirror_path("frank", "up"), &up);
    assert!(worker.try_wait().unwrap().is_none(), "worker process died");
    worker.kill().ok();
    worker.wait().ok();
    redis.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_payload_does_not_stop_the_queue() {
    let env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("grace", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;

    // a payload that is not a SyncMirror, on the same queue
    let mut poison = apalis_redis::RedisStorage::<serde_json::Value>::new(env.redis.clone())
        .with_config(
            env.jobs()
                .queue("default", Lane::Priority)
                .unwrap()
                .get_config()
                .clone(),
        );
    poison
        .push(serde_json::json!({ "not": "a job" }))
        .await
        .unwrap();
    let mut worker = spawn_worker(&env, "worker.log");

    let job = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    assert_mirrors(&env.mirror_path("grace", "up"), &up);
    assert!(worker.try_wait().unwrap().is_none(), "worker process died");
    worker.kill().ok();
    worker.wait().ok();
}

/// An HTTP upstream on loopback that demands Basic auth and records what it is sent.
async fn auth_demanding_upstream() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            // header names are case-insensitive (HTTP/1.1 clients send either)
            if let Some(auth) = text.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                let value = value.trim_start();
                (name.eq_ignore_ascii_case("authorization"))
                    .then(|| value.strip_prefix("Basic "))
                    .flatten()
            }) {
                record.lock().unwrap().push(auth.trim().to_owned());
            }
            let _ = conn
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_credentials_reach_the_upstream_and_never_the_logs() {
    let env = TestEnv::new().await;
    let (port, seen) = auth_demanding_upstream().await;
    let (bob, _) = env.user("bob", false).await;
    let url = format!("http://bob:hunter2@127.0.0.1:{port}/private.git");
    let repo = env.mirror(&bob, "private", &url).await;
    let stored: String = sqlx::query_scalar("SELECT mirror_url FROM repositories WHERE id = $1")
        .bind(repo)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(!stored.contains("hunter2"), "stored in clear: {stored}");

    let mut worker = Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
        .envs(env.env_vars())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stasis-worker");
    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    assert_eq!(finished.attempts, 1, "a refused login is permanent");
    let runs = env.runs(job).await;
    assert_eq!(runs[0].error_kind, Some(ErrorKind::Auth), "{runs:?}");

    // The upstream was sent the opened credentials...
    let basic = "Ym9iOmh1bnRlcjI="; // base64("bob:hunter2")
    assert!(
        seen.lock().unwrap().iter().any(|a| a == basic),
        "credentials not sent: {:?}",
        seen.lock().unwrap()
    );
    // ...and nothing else ever shows them.
    assert!(Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || {
        let status = worker.wait().expect("worker exits");
        let mut text = String::new();
        use std::io::Read;
        worker
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        worker
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status, text)
    })
    .await
    .unwrap();
    assert!(out.0.success(), "worker exit: {:?}", out.0);
    assert!(out.1.contains("sync failed"), "no log captured: {}", out.1);
    let repo = env.repo(repo).await;
    for text in [
        out.1.as_str(),
        repo.sync_error.as_deref().unwrap_or_default(),
    ]
    .into_iter()
    .chain(runs.iter().filter_map(|r| r.error.as_deref()))
    {
        assert!(
            !text.contains("hunter2") && !text.contains(basic),
            "leaked: {text}"
        );
    }
}
