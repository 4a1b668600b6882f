//! SIGTERM with a sync still running past `worker.shutdown_grace`: the sync is stopped,
//! its run recorded as interrupted, its job pending again and its lock released, and
//! the process exits 0 within the grace and a few seconds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stasis_shared::domain::{JobState, RunOutcome, SyncReason};
use stasis_shared::lock::Leases;
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_past_the_grace_interrupts_the_sync_and_requeues_its_job() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    // a 60 s download: 2.4 MB at 40 kB/s
    up.add_blob("big.bin", 2_400_000);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 40_000).await;
    let (owner, _) = env.user("erin", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;

    let log = env.dir.path().join("worker.log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_stasis-worker"))
        .envs(env.env_vars())
        .env("STASIS_WORKER_SHUTDOWN_GRACE", "2s")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start stasis-worker");
    let job = env.enqueue(repo, SyncReason::Import).await;
    eventually("the sync to start", WAIT, || async {
        env.runs(job).await.first().map(|_| ())
    })
    .await;
    eventually("the download to be under way", WAIT, || {
        let bytes = proxy.connections();
        async move { (bytes > 0).then_some(()) }
    })
    .await;

    let signalled = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = eventually("the worker to exit", WAIT, || {
        let exited = worker.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "worker exited with {status}:\n{log}");
    assert!(
        took < GRACE + Duration::from_secs(5),
        "exited {took:?} after SIGTERM:\n{log}"
    );
    eprintln!("worker exited {took:?} after SIGTERM (grace {GRACE:?})");

    let runs = env.runs(job).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].outcome,
        Some(RunOutcome::Interrupted),
        "{runs:?}\n{log}"
    );
    assert!(runs[0].finished_at.is_some(), "{runs:?}");
    let requeued = env.job(job).await;
    assert_eq!(requeued.state, JobState::Pending);
    assert_eq!(
        requeued.attempts, 0,
        "an interrupted attempt is not counted"
    );
    assert!(env.waiting_deliveries().await > 0, "a fresh delivery waits");
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    assert!(
        !leases.is_held(&leases.repo_key(repo)).await.unwrap(),
        "the repository lock is released"
    );
}
