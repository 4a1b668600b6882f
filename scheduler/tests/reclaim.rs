//! Redis holds what is in flight: finished deliveries (apalis-redis's done set, their
//! payloads and meta hashes) leave it, dead ones are kept up to `queue.max_dead`, and a
//! sweep never touches a delivery that waits or runs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{
    AbortError, BackendExt, BoxDynError, Data, Monitor, TaskBuilder, TaskSink, WorkerBuilder,
};
use redis::AsyncCommands;
use stasis_shared::domain::{Lane, SyncMirror, SyncReason};
use stasis_shared::queue::reclaim::{forget_gone_workers, sweep, Limits};
use stasis_shared::queue::Lanes;
use stasis_shared::queue::{self, queue_name};
use stasis_testkit::git::Upstream;
use stasis_testkit::{eventually, TestEnv};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// Every key of the test's namespace.
async fn keys(env: &TestEnv) -> Vec<String> {
    let mut keys: Vec<String> = env
        .redis
        .clone()
        .keys(format!("{}:*", env.cfg.queue.namespace))
        .await
        .unwrap();
    keys.sort();
    keys
}

fn is_meta(key: &str) -> bool {
    key.contains(":meta:")
}

/// Real syncs through a real worker, in two cycles with a worker restart between them
/// (each worker process registers consumers of its own), and a scheduler leading: once
/// everything finished, the namespace holds no more keys than it did idle before the
/// first sync, no payload, no meta hash and nothing in the done sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_syncs_leave_redis_as_it_was_idle() {
    let mut env = TestEnv::new().await;
    // the leader only sweeps and recovers: this test enqueues the syncs itself
    env.cfg.mirror.enabled = false;
    let (owner, _) = env.user("ruth", false).await;
    let mut repos = Vec::new();
    for i in 0..6 {
        let up = Upstream::create(env.dir.path().join(format!("up{i}")));
        repos.push(env.mirror(&owner, &format!("m{i}"), &up.url()).await);
    }
    // fails every attempt: each retry is a delivery of its own, and the job ends failed
    repos.push(
        env.mirror(&owner, "gone", "file:///nonexistent/upstream")
            .await,
    );

    let scheduler = env.spawn_scheduler();
    let worker = env.spawn_worker();
    let ns = env.cfg.queue.namespace.clone();
    let registered = |env: &TestEnv| {
        let ns = ns.clone();
        let redis = env.redis.clone();
        async move {
            let mut redis = redis;
            let mut n = 0;
            for lane in Lane::ALL {
                let count: u64 = redis
                    .zcard(format!("{}:workers", queue_name(&ns, "default", lane)))
                    .await
                    .unwrap();
                n += count;
            }
            n
        }
    };
    let leading = format!("{ns}:scheduler:status");
    eventually("the worker's consumers and the leader", WAIT, || async {
        let led: bool = env.redis.clone().exists(&leading).await.unwrap();
        (led && registered(&env).await == 2).then_some(())
    })
    .await;
    // Left out on both sides: what stays after syncs besides what is in flight (the
    // delivery epoch's marker, one per namespace, and each lease's fence counter, one per
    // mirror however often it syncs: fleet state, not history), and the leader's lease
    // and status, which a busy machine lets lapse for a moment.
    let fleet_state =
        |k: &String| k.ends_with(":epoch") || k.ends_with(":fence") || k.contains(":scheduler:");
    // idle, with a worker and a leader: what the namespace holds with nothing in flight
    let idle: Vec<String> = keys(&env)
        .await
        .into_iter()
        .filter(|k| !fleet_state(k))
        .collect();

    let mut jobs = Vec::new();
    for (i, &repo) in repos.iter().enumerate() {
        let reason = if i % 2 == 0 {
            SyncReason::Scheduled
        } else {
            SyncReason::Manual
        };
        jobs.push(env.enqueue(repo, reason).await);
    }
    env.drained(WAIT).await;

    // a new worker process, whose consumers take new names
    worker.stop().await;
    let worker = env.spawn_worker();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Manual).await);
    }
    env.drained(WAIT).await;
    let mut failed = 0;
    for &job in &jobs {
        let state = env.job(job).await.state;
        assert!(
            matches!(state.as_str(), "done" | "failed"),
            "{job} is {state}"
        );
        failed += usize::from(state.as_str() == "failed");
    }
    assert_eq!(failed, 2, "the unreachable upstream's job of each cycle");

    // the leader sweeps every 5 s; the stopped worker's consumers leave apalis's
    // workers set after their missed heartbeats, and their registrations with them
    let deadline = tokio::time::Instant::now() + WAIT;
    let left = loop {
        forget_gone_workers(&env.redis, &Lanes::of(&env.cfg))
            .await
            .unwrap();
        let now: Vec<String> = keys(&env)
            .await
            .into_iter()
            .filter(|k| !fleet_state(k))
            .collect();
        let back = now.len() <= idle.len() && !now.iter().any(|k| is_meta(k));
        if back || tokio::time::Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        left.len() <= idle.len(),
        "within {WAIT:?}\nidle: {idle:?}\nafter: {left:?}"
    );
    let fences = keys(&env)
        .await
        .into_iter()
        .filter(|k| k.ends_with(":fence"))
        .count();
    assert!(
        fences <= repos.len() + 2,
        "one per mirror, the leader's and the dispatcher's: {fences}"
    );
    let mut redis = env.redis.clone();
    for lane in Lane::ALL {
        let q = queue_name(&ns, "default", lane);
        let payloads: u64 = redis.hlen(format!("{q}:data")).await.unwrap();
        let done: u64 = redis.scard(format!("{q}:done")).await.unwrap();
        let dead: u64 = redis.scard(format!("{q}:dead")).await.unwrap();
        assert_eq!((payloads, done, dead), (0, 0, 0), "{q}: {left:?}");
    }
    assert!(!left.iter().any(|k| is_meta(k)), "{left:?}");

    // the operators' overview counts the finished jobs from Postgres, not from Redis
    let overview = stasis_shared::overview::queue_overview(&env.cfg, &env.pool, &env.redis)
        .await
        .unwrap();
    assert_eq!(overview.jobs["done"], (jobs.len() - failed) as i64);
    assert_eq!(overview.jobs["failed"], failed as i64);
    assert_eq!(overview.redis, queue::RedisDepth::default());
    worker.stop().await;
    scheduler.stop().await;
}

/// What the test consumer does with each delivery, by repository id.
#[derive(Default)]
struct Script {
    /// Given up at once (apalis files them in the dead set).
    abort: Mutex<HashSet<Uuid>>,
    /// Held until `release` is notified: in flight during the sweeps.
    hold: Mutex<HashSet<Uuid>>,
    held: AtomicBool,
    release: Notify,
}

async fn consume(job: serde_json::Value, script: Data<Arc<Script>>) -> Result<(), BoxDynError> {
    let job: SyncMirror = serde_json::from_value(job)?;
    if script.abort.lock().unwrap().contains(&job.repo_id) {
        return Err(AbortError::new(std::io::Error::other("given up")).into());
    }
    if script.hold.lock().unwrap().contains(&job.repo_id) {
        script.held.store(true, Ordering::SeqCst);
        script.release.notified().await;
    }
    Ok(())
}

fn delivery() -> SyncMirror {
    SyncMirror {
        job_id: Uuid::new_v4(),
        repo_id: Uuid::new_v4(),
        reason: SyncReason::Scheduled,
    }
}

/// Against apalis-redis's own acknowledgements: 30 done and 5 dead deliveries, one held
/// in flight by its consumer and one waiting for its time. A sweep removes at most its
/// limits; repeated, every done delivery goes, dead ones are trimmed oldest first to
/// the cap with the kept ones' payloads intact, and the waiting and in-flight deliveries
/// keep their ids, payloads and meta hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_is_bounded_and_spares_waiting_and_in_flight_deliveries() {
    let env = TestEnv::new().await;
    let ns = env.cfg.queue.namespace.clone();
    let q = queue_name(&ns, "default", Lane::Scheduled);
    let mut redis = env.redis.clone();
    let job_service = env.jobs();
    let script = Arc::new(Script::default());

    let stop = CancellationToken::new();
    let (conn, cfg, data, signal) = (
        env.redis.clone(),
        env.cfg.queue.clone(),
        script.clone(),
        stop.clone(),
    );
    let monitor = tokio::spawn(
        Monitor::new()
            .register(move |i| {
                let backend: queue::ConsumerStorage =
                    queue::storage(conn.clone(), &cfg, "default", Lane::Scheduled, 8);
                WorkerBuilder::new(format!("reclaim-test-{i}"))
                    .backend(backend.poll_with_interval(Duration::from_millis(20)))
                    .data(data.clone())
                    .concurrency(8)
                    .build(consume)
            })
            .run_with_signal(async move {
                signal.cancelled().await;
                Ok(())
            }),
    );

    let dead: Vec<SyncMirror> = (0..5).map(|_| delivery()).collect();
    script
        .abort
        .lock()
        .unwrap()
        .extend(dead.iter().map(|d| d.repo_id));
    let held = delivery();
    script.hold.lock().unwrap().insert(held.repo_id);
    let mut all: Vec<SyncMirror> = (0..30).map(|_| delivery()).collect();
    all.extend(dead.iter().cloned());
    all.push(held.clone());
    for d in all {
        // one push each, as the scheduler and API push them
        job_service.push(vec![d]).await.unwrap();
    }
    eventually("30 done, 5 dead and 1 held", WAIT, || async {
        let mut redis = env.redis.clone();
        let done: u64 = redis.scard(format!("{q}:done")).await.unwrap();
        let dead: u64 = redis.scard(format!("{q}:dead")).await.unwrap();
        (done == 30 && dead == 5 && script.held.load(Ordering::SeqCst)).then_some(())
    })
    .await;
    // a delivery waiting for its time (the queue's own retry of a failed handler lands
    // so), pushed once the consumer is busy with nothing else
    let later = delivery();
    let at = std::time::SystemTime::now() + Duration::from_secs(3600);
    let at = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut lane = job_service
        .queue("default", later.reason.lane())
        .unwrap()
        .clone();
    lane.push_task(TaskBuilder::new(later).run_at_timestamp(at).build())
        .await
        .unwrap();
    let waiting: Vec<String> = redis.zrange(format!("{q}:scheduled"), 0, -1).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let inflight_sets: Vec<String> = redis.keys(format!("{q}:inflight:*")).await.unwrap();
    let mut inflight: Vec<String> = Vec::new();
    for set in &inflight_sets {
        inflight.extend(redis.smembers::<_, Vec<String>>(set).await.unwrap());
    }
    assert_eq!(inflight.len(), 1, "the held delivery: {inflight:?}");
    let mut dead_ids: Vec<String> = redis.smembers(format!("{q}:dead")).await.unwrap();
    dead_ids.sort();
    // as operators are shown them before the sweep: delivery id and job
    let shown = queue::dead_deliveries(&env.redis, &Lanes::of(&env.cfg), 10)
        .await
        .unwrap();
    assert_eq!(shown.len(), 5, "{shown:?}");

    let small = Limits {
        batch: 10,
        batches: 2,
    };
    let first = sweep(&env.redis, &Lanes::of(&env.cfg), small, 2)
        .await
        .unwrap();
    assert_eq!(
        (first.done, first.dead),
        (20, 3),
        "two batches of ten done; dead trimmed to the cap of 2"
    );
    let done_left: u64 = redis.scard(format!("{q}:done")).await.unwrap();
    assert_eq!(done_left, 10, "what the first sweep's limits left");
    let second = sweep(&env.redis, &Lanes::of(&env.cfg), Limits::default(), 2)
        .await
        .unwrap();
    assert_eq!((second.done, second.dead), (10, 0));
    let again = sweep(&env.redis, &Lanes::of(&env.cfg), Limits::default(), 2)
        .await
        .unwrap();
    assert_eq!((again.done, again.dead), (0, 0), "nothing left to sweep");

    // the newest two dead deliveries stay, with what operators are shown of them
    let mut kept: Vec<String> = redis.smembers(format!("{q}:dead")).await.unwrap();
    kept.sort();
    assert_eq!(kept, dead_ids[3..].to_vec(), "the oldest were trimmed");
    let listed = queue::dead_deliveries(&env.redis, &Lanes::of(&env.cfg), 10)
        .await
        .unwrap();
    let kept_shown: Vec<_> = shown
        .iter()
        .filter(|d| kept.contains(&d.delivery_id))
        .cloned()
        .collect();
    assert_eq!(listed, kept_shown, "shown as before, job included");
    assert!(listed.iter().all(|d| d.job_id.is_some()), "{listed:?}");

    // exactly the waiting, in-flight and kept dead deliveries have a payload and a meta
    let mut expected: Vec<String> = waiting
        .iter()
        .chain(&inflight)
        .chain(&kept)
        .cloned()
        .collect();
    expected.sort();
    let mut payloads: Vec<String> = redis.hkeys(format!("{q}:data")).await.unwrap();
    payloads.sort();
    assert_eq!(payloads, expected);
    let mut metas: Vec<String> = keys(&env)
        .await
        .into_iter()
        .filter(|k| is_meta(k))
        .filter_map(|k| k.rsplit(':').next().map(str::to_owned))
        .collect();
    metas.sort();
    assert_eq!(metas, expected);
    let still_waiting: Vec<String> = redis.zrange(format!("{q}:scheduled"), 0, -1).await.unwrap();
    assert_eq!(still_waiting, waiting);

    // the held delivery finishes normally after the sweeps, and is then swept too
    script.release.notify_waiters();
    eventually("the held delivery to be acknowledged", WAIT, || async {
        let mut redis = env.redis.clone();
        let done: u64 = redis.scard(format!("{q}:done")).await.unwrap();
        (done == 1).then_some(())
    })
    .await;
    let last = sweep(&env.redis, &Lanes::of(&env.cfg), Limits::default(), 2)
        .await
        .unwrap();
    assert_eq!(last.done, 1);
    let payloads: u64 = redis.hlen(format!("{q}:data")).await.unwrap();
    assert_eq!(
        payloads, 3,
        "the waiting delivery and the two kept dead ones"
    );
    stop.cancel();
    let _ = monitor.await;
}
