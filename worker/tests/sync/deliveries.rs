//! Deliveries against the repository lock and the worker's permits: duplicates never
//! fetch one repository twice at once, "Sync now" overtakes a scheduled backlog, and a
//! delivery waiting for a permit keeps its lock.

use std::time::Duration;

use stasis_shared::domain::{JobState, RunOutcome, SyncMirror, SyncReason};
use stasis_shared::lock::Leases;
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, throughout, TestEnv};

use crate::{set_upstream, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_enqueues_and_deliveries_never_fetch_one_repository_twice_at_once() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    up.add_blob("big.bin", 1_200_000);
    let daemon = GitDaemon::start(&served);
    // ~2.4 s per fetch: long enough for duplicates to collide
    let proxy = ThrottledProxy::start(daemon.port, 500_000).await;
    let (dave, _) = env.user("dave", false).await;
    let repo = env.mirror(&dave, "up", &proxy.url("up")).await;

    // concurrent requests all get the same job
    let enqueuer = env.enqueuer();
    let requests = (0..20).map(|_| {
        let enqueuer = enqueuer.clone();
        async move {
            enqueuer
                .enqueue(repo, SyncReason::Manual)
                .await
                .unwrap()
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let job = results[0].job_id;
    assert!(results.iter().all(|r| r.job_id == job));
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);

    // and deliveries duplicated behind the dedup's back (as apalis's at-least-once
    // redelivery does) are serialised by the repository lock across two workers
    let duplicate = SyncMirror {
        job_id: job,
        repo_id: repo,
        reason: SyncReason::Manual,
    };
    enqueuer.push(vec![duplicate; 6]).await.unwrap();
    let first = env.spawn_worker();
    let second = env.spawn_worker();

    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    // every duplicate delivered and acknowledged: from here on none can still run
    env.drained(WAIT).await;
    assert_eq!(
        proxy.max_concurrent(),
        1,
        "two fetches of one repository overlapped"
    );
    let runs = env.runs(job).await;
    assert_eq!(runs.len(), 1, "the job ran once: {runs:?}");
    assert_eq!(runs[0].outcome, Some(RunOutcome::Success));
    assert_eq!(proxy.connections(), 1, "a dropped duplicate fetched");
    assert_mirrors(&env.mirror_path("dave", "up"), &up);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_now_goes_ahead_of_a_scheduled_backlog() {
    let mut env = TestEnv::new().await;
    env.cfg.worker.concurrency = 1;
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("ivan", false).await;
    const BACKLOG: usize = 120;
    for i in 0..BACKLOG {
        let repo = env.mirror(&owner, &format!("bulk{i}"), &up.url()).await;
        env.enqueue(repo, SyncReason::Scheduled).await;
    }
    let urgent = env.mirror(&owner, "urgent", &up.url()).await;

    let worker = env.spawn_worker();
    let manual = env.enqueue(urgent, SyncReason::Manual).await;
    assert_eq!(env.finished(manual, WAIT).await.state, JobState::Done);
    let scheduled_done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs WHERE reason = 'scheduled' AND state = 'done'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        (scheduled_done as usize) < BACKLOG / 4,
        "the manual sync waited for {scheduled_done} of {BACKLOG} scheduled syncs"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_waiting_for_a_permit_keeps_its_repository_lock() {
    let mut env = TestEnv::new().await;
    env.cfg.worker.concurrency = 1;
    env.cfg.sync.lock_ttl = Duration::from_secs(1);
    let served = env.dir.path().join("served");
    let _a = Upstream::create(served.join("a"));
    let _b = Upstream::create(served.join("b"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("vera", false).await;
    let slow_repo = env.mirror(&owner, "a", &daemon.url("a")).await;
    let waiting_repo = env.mirror(&owner, "b", &daemon.url("b")).await;
    let worker = env.spawn_worker();
    for repo in [slow_repo, waiting_repo] {
        let import = env.enqueue(repo, SyncReason::Import).await;
        assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    }
    // the only permit goes to a sync whose ref listing trickles in
    let slow = ThrottledProxy::start(daemon.port, 50).await;
    set_upstream(&env, slow_repo, &slow.url("a")).await;
    let slow_job = env.enqueue(slow_repo, SyncReason::Scheduled).await;
    eventually("the slow sync running", WAIT, || async {
        (env.job(slow_job).await.state == JobState::Running).then_some(())
    })
    .await;

    // the next delivery takes its repository's lock, then waits for the permit
    let waiting_job = env.enqueue(waiting_repo, SyncReason::Scheduled).await;
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let key = leases.repo_key(waiting_repo);
    eventually("the waiting delivery's lock", WAIT, || async {
        leases.is_held(&key).await.unwrap().then_some(())
    })
    .await;
    // three TTLs: a lock not renewed while its delivery waits would lapse in the first
    throughout(
        "the waiting delivery's lock, held while the slow sync runs",
        env.cfg.sync.lock_ttl * 3,
        || async {
            assert_eq!(
                env.job(slow_job).await.state,
                JobState::Running,
                "the slow sync ended too soon to test anything: slow its upstream further"
            );
            assert_eq!(env.job(waiting_job).await.state, JobState::Pending);
            leases.is_held(&key).await.unwrap()
        },
    )
    .await;

    let waited = env.finished(waiting_job, WAIT).await;
    assert_eq!((waited.state.as_str(), waited.attempts), ("done", 1));
    assert_eq!(env.finished(slow_job, WAIT).await.state, JobState::Done);
    let slow_run = env.runs(slow_job).await.pop().expect("a run");
    let waited_run = env.runs(waiting_job).await.pop().expect("a run");
    assert!(
        waited_run.started_at >= slow_run.finished_at.expect("finished"),
        "one permit, yet the runs overlap: {slow_run:?} {waited_run:?}"
    );
    worker.stop().await;
}
