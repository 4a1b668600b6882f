//! Guarantees of the sync pipeline that no other scenario exercises on its own: each
//! test checks one, through a worker running in this process against real Postgres,
//! Redis and loopback upstreams.

use std::time::Duration;

use stasis_shared::domain::{ErrorKind, JobState, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_sealed_under_another_key_fail_the_sync_at_once_without_retrying() {
    let mut env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let daemon = GitDaemon::start(env.dir.path());
    let (alice, _) = env.user("alice", false).await;
    let url = daemon.url("up").replace("git://", "http://alice:pw@");
    let repo = env.mirror(&alice, "sealed", &url).await;
    // the worker runs with a key the credentials were not sealed with
    env.cfg.secrets.key = Some("ab".repeat(32).into());
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    assert_eq!(finished.attempts, 1, "retrying cannot bring the key back");
    let runs = env.runs(job).await;
    assert_eq!(runs[0].error_kind, Some(ErrorKind::Auth), "{runs:?}");
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("cannot be opened"), "{error}");
    assert!(!error.contains("pw"), "{error}");
    drop(up);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_past_its_timeout_is_stopped_and_its_connection_closed() {
    let mut env = TestEnv::new().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.add_blob("big.bin", 2 << 20);
    let daemon = GitDaemon::start(env.dir.path());
    // 2 MiB at 20 kB/s: far longer than the timeout
    let proxy = ThrottledProxy::start(daemon.port, 20_000).await;
    env.cfg.sync.timeout = Duration::from_secs(2);
    env.cfg.sync.max_attempts = 1;
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "slow", &proxy.url("up")).await;
    let worker = env.spawn_worker();

    let started = std::time::Instant::now();
    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed, "{finished:?}");
    let runs = env.runs(job).await;
    assert_eq!(runs[0].error_kind, Some(ErrorKind::Timeout), "{runs:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped near its timeout, not at the end of the transfer: {:?}",
        started.elapsed()
    );
    stasis_testkit::eventually("the upstream connection to close", WAIT, || async {
        (proxy.connections() > 0 && proxy.open() == 0).then_some(())
    })
    .await;
    let mirror = env.mirror_path("alice", "slow");
    let refs = git2::Repository::open_bare(&mirror)
        .map(|r| r.references().map(|refs| refs.count()).unwrap_or(0))
        .unwrap_or(0);
    assert_eq!(refs, 0, "a stopped import writes no ref");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_loses_its_lock_stops_and_its_results_are_refused() {
    use stasis_shared::lock::Leases;
    let mut env = TestEnv::new().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.add_blob("big.bin", 2 << 20);
    let daemon = GitDaemon::start(env.dir.path());
    let proxy = ThrottledProxy::start(daemon.port, 40_000).await;
    env.cfg.sync.lock_ttl = Duration::from_secs(3);
    env.cfg.sync.max_attempts = 1;
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "stolen", &proxy.url("up")).await;
    let worker = env.spawn_worker();
    let job = env.enqueue(repo, SyncReason::Manual).await;
    stasis_testkit::eventually("the sync to be under way", WAIT, || async {
        (env.job(job).await.state == JobState::Running && proxy.open() > 0).then_some(())
    })
    .await;

    // another holder takes the lock over, as after an expiry, and records its fence
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let key = leases.repo_key(repo);
    let old_fence = env.repo(repo).await.sync_fence;
    let mut conn = env.redis.clone();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let lease = leases
        .try_acquire(&key, Duration::from_secs(600), old_fence)
        .await
        .unwrap()
        .expect("the freed lock");
    assert!(lease.fence > old_fence);
    sqlx::query("UPDATE repositories SET sync_fence = $2, sync_status = 'syncing' WHERE id = $1")
        .bind(repo)
        .bind(lease.fence)
        .execute(&env.pool)
        .await
        .unwrap();

    stasis_testkit::eventually("the old worker's run to end", WAIT, || async {
        let runs = env.runs(job).await;
        runs.first()
            .filter(|r| r.outcome.is_some())
            .map(|r| r.outcome)
    })
    .await;
    let runs = env.runs(job).await;
    assert_eq!(runs[0].outcome, Some(RunOutcome::LostLock), "{runs:?}");
    stasis_testkit::eventually("its upstream connection to close", WAIT, || async {
        (proxy.open() == 0).then_some(())
    })
    .await;
    // the new holder's state stands: the old worker wrote nothing over it
    let after = env.repo(repo).await;
    assert_eq!(after.sync_fence, lease.fence);
    assert_eq!(after.sync_status, SyncStatus::Syncing);
    assert!(after.sync_error.is_none(), "{:?}", after.sync_error);
    assert!(after.last_synced_at.is_none());
    worker.stop().await;
}
