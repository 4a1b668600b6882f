//! No path pushes a lane past its bound, and no owner's burst starves the others: every
//! delivery is admitted under `queue.max_priority_backlog` / `queue.max_backlog`, the
//! overflow waits in Postgres and is delivered as room appears, in turns across owners.
//! Tried with a flood of imports behind a slow upstream, an operator's bulk retry, and
//! Redis losing its data while many jobs are pending; in each, a sampler watches the
//! lane's depth the whole time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_shared::domain::{Lane, SyncReason};
use stasis_shared::jobs::Jobs;
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::latency::LatencyProxy;
use stasis_testkit::{eventually, TestEnv};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The priority lane's bound in these tests: small, so that the flood overflows it.
const BOUND: u64 = 10;
/// Concurrent admitters may each take the last free place at once: the dispatcher and
/// this test's sequential requests.
const RACE: u64 = 2;
/// The deepest a lane may be: its bound, the admitters' race, and what apalis itself may
/// put back in it (a delivery whose handler failed on a backend error under load is
/// retried by the queue: at most the worker's in-flight deliveries of the lane,
/// `worker.concurrency` × 2).
fn allowed(env: &TestEnv) -> u64 {
    BOUND + RACE + 2 * env.cfg.worker.concurrency as u64
}
const WAIT: Duration = Duration::from_secs(240);

/// Samples a lane's depth every few milliseconds until stopped; the deepest seen.
struct DepthWatch {
    deepest: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl DepthWatch {
    fn start(job_service: Jobs, lane: Lane) -> Self {
        let deepest = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (seen, until) = (deepest.clone(), stop.clone());
        tokio::spawn(async move {
            while !until.is_cancelled() {
                if let Ok(depth) = job_service.depth("default", lane).await {
                    seen.fetch_max(depth, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { deepest, stop }
    }

    fn deepest(&self) -> u64 {
        self.stop.cancel();
        self.deepest.load(Ordering::SeqCst)
    }
}

async fn unfinished(env: &TestEnv, owner: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id
         WHERE r.owner_id = $1 AND j.state IN ('pending', 'running')",
    )
    .bind(owner)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_owners_flood_of_imports_does_not_stand_in_front_of_anothers_import() {
    const FLOODERS: usize = 3;
    const EACH: usize = 60;
    let mut env = TestEnv::new().await;
    env.cfg.queue.max_priority_backlog = BOUND;
    env.cfg.worker.concurrency = 8;
    let served = env.dir.path().join("served");
    Upstream::create(served.join("slow"));
    let healthy = Upstream::create(served.join("healthy"));
    let daemon = GitDaemon::start(&served);
    // every exchange with the slow upstream waits 300 ms a round trip
    let proxy = LatencyProxy::start(
        vec![([127, 0, 0, 1], daemon.port).into()],
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let slow_url = format!("git://{}/slow", proxy.addr);
    // one worker: two in one process would share their queue consumers' names
    let worker = env.spawn_worker();
    let job_service = env.jobs();
    let watch = DepthWatch::start(job_service.clone(), Lane::Priority);

    let mut flooders = Vec::new();
    for f in 0..FLOODERS {
        let (owner, _) = env.user(&format!("flood{f}"), false).await;
        for i in 0..EACH {
            let repo = env.mirror(&owner, &format!("m{i}"), &slow_url).await;
            job_service.request(repo, SyncReason::Import).await.unwrap();
        }
        flooders.push(owner.id);
    }
    let (newcomer, _) = env.user("newcomer", false).await;
    let repo = env.mirror(&newcomer, "one", &healthy.url()).await;
    let began = Instant::now();
    let job = env.enqueue(repo, SyncReason::Import).await;
    let done = env.finished(job, WAIT).await;
    let took = began.elapsed();
    assert_eq!(done.state.as_str(), "done");
    let mut still_flooding = 0;
    for owner in &flooders {
        still_flooding += unfinished(&env, *owner).await;
    }
    assert!(
        still_flooding > (FLOODERS * EACH / 2) as i64,
        "the newcomer's import waited for the flood: {still_flooding} of the flood left after {took:?}"
    );

    env.drained(WAIT).await;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state <> 'done'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(failed, 0, "every import ended in success");
    let deepest = watch.deepest();
    assert!(
        deepest <= allowed(&env),
        "the priority lane held {deepest} deliveries, past its bound of {BOUND}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_retry_of_many_failed_jobs_stays_under_the_lanes_bound() {
    const JOBS: usize = 1500;
    let mut env = TestEnv::new().await;
    env.cfg.queue.max_priority_backlog = BOUND;
    let (owner, _) = env.user("fleet", false).await;
    env.due_mirrors(&owner, JOBS).await;
    let failed: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO sync_jobs (id, repo_id, reason, state, attempts, max_attempts, finished_at)
         SELECT gen_random_uuid(), id, 'manual', 'failed', 1, 1, now() FROM repositories
         RETURNING id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let job_service = env.jobs();
    let watch = DepthWatch::start(job_service.clone(), Lane::Priority);
    let worker = env.spawn_worker();
    for job in &failed {
        job_service.retry(*job).await.unwrap().unwrap();
    }
    env.drained(WAIT).await;
    // a delivery whose bookkeeping hit a backend error mid-attempt runs again (its
    // attempt counted), so "at least once more"
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs WHERE state = 'failed' AND attempts >= 2",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(retried, JOBS as i64, "every retried job ran once more");
    let deepest = watch.deepest();
    assert!(
        deepest <= allowed(&env),
        "the priority lane held {deepest} deliveries, past its bound of {BOUND}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_jobs_whose_deliveries_redis_lost_come_back_in_bounded_waves() {
    const JOBS: usize = 1500;
    let mut env = TestEnv::new().await;
    env.cfg.queue.max_priority_backlog = BOUND;
    let (owner, _) = env.user("fleet", false).await;
    env.due_mirrors(&owner, JOBS).await;
    // delivered once, in the epoch before the loss
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, max_attempts, in_queue)
         SELECT gen_random_uuid(), id, 'manual', 1, true FROM repositories",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    env.forget_redis().await;
    let watch = DepthWatch::start(env.jobs(), Lane::Priority);
    let scheduler = env.spawn_scheduler();
    let worker = env.spawn_worker();
    eventually("every lost job to run", WAIT, || async {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_jobs WHERE state IN ('pending', 'running')",
        )
        .fetch_one(&env.pool)
        .await
        .ok()?;
        (left == 0).then_some(())
    })
    .await;
    let deepest = watch.deepest();
    assert!(
        deepest <= allowed(&env),
        "the priority lane held {deepest} deliveries, past its bound of {BOUND}"
    );
    worker.stop().await;
    scheduler.stop().await;
}

#[tokio::test]
async fn a_delivery_whose_mirror_was_deleted_meanwhile_is_dropped_and_the_rest_delivered() {
    let mut env = TestEnv::new().await;
    // named storages only: no `default` lane a lost route could fall back to
    env.two_storages(1, 1);
    let (owner, _) = env.user("owner", false).await;
    let gone = env
        .mirror_on("a", &owner, "gone", "git://127.0.0.1/gone")
        .await;
    let kept = env
        .mirror_on("b", &owner, "kept", "git://127.0.0.1/kept")
        .await;
    sqlx::query("DELETE FROM repositories WHERE id = $1")
        .bind(gone)
        .execute(&env.pool)
        .await
        .unwrap();
    let delivery = |repo_id| stasis_shared::domain::SyncMirror {
        job_id: Uuid::new_v4(),
        repo_id,
        reason: SyncReason::Scheduled,
    };
    let jobs = env.jobs();
    jobs.push(vec![delivery(gone), delivery(kept)])
        .await
        .expect("the push delivers what still has a mirror");
    assert_eq!(jobs.depth("b", Lane::Scheduled).await.unwrap(), 1);
    assert_eq!(jobs.depth("a", Lane::Scheduled).await.unwrap(), 0);
}
