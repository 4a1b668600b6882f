//! Redis is only the delivery mechanism; Postgres is the record. When Redis restarts
//! empty, or crashes with `appendonly` as syncs start, every job Postgres holds as
//! pending or running still runs, within seconds and without waiting for the reaper
//! (`scheduler.stuck_after` stays at its 30-minute default here).

use std::time::{Duration, Instant};

use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{free_port, refs, wait_for_port, GitDaemon, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::services::PrivateRedis;
use stasis_testkit::{eventually, TestEnv};

const MIRRORS: usize = 20;

/// Jobs still pending or running.
async fn unfinished(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state IN ('pending', 'running')")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_with_deliveries_waiting_loses_no_sync() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    assert_eq!(env.cfg.scheduler.stuck_after, Duration::from_secs(30 * 60));
    let (owner, _) = env.user("carol", false).await;
    let mut ups = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..MIRRORS {
        let up = Upstream::create(env.dir.path().join(format!("up{i}")));
        let repo = env.mirror(&owner, &format!("m{i}"), &up.url()).await;
        jobs.push(env.enqueue(repo, SyncReason::Manual).await);
        ups.push(up);
    }
    let _scheduler = Proc::spawn(&env, "stasis-scheduler", "scheduler.log", &[]);
    assert_eq!(env.waiting_deliveries().await, MIRRORS as u64);

    // the upstreams move on while the deliveries wait; then Redis loses them all
    for (i, up) in ups.iter_mut().enumerate() {
        up.commit(&format!("while waiting {i}"));
    }
    redis.restart();
    let restarted = Instant::now();
    let _workers: Vec<Proc> = (0..2)
        .map(|i| Proc::spawn(&env, "stasis-worker", &format!("worker{i}.log"), &[]))
        .collect();

    let deadline = restarted + Duration::from_secs(30);
    for &job in &jobs {
        let left = deadline.saturating_duration_since(Instant::now());
        assert_eq!(env.finished(job, left).await.state, JobState::Done);
    }
    println!(
        "{MIRRORS} deliveries lost with Redis: every job done {:.1?} after the restart",
        restarted.elapsed()
    );
    for (i, up) in ups.iter().enumerate() {
        let mirror = env.mirror_path("carol", &format!("m{i}"));
        assert_eq!(
            refs(&mirror),
            up.refs(),
            "m{i} is not at its upstream's head"
        );
    }
    assert_eq!(unfinished(&env).await, 0);
}

/// Without a scheduler, the owner's "Sync now" is what finds the lost delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_now_re_pushes_a_delivery_redis_lost() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let (owner, _) = env.user("dave", false).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let job = env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.waiting_deliveries().await, 1);
    up.commit("after the job was queued");

    redis.restart();
    let again = eventually(
        "Redis to accept requests again",
        Duration::from_secs(10),
        || async {
            env.jobs()
                .request(repo, SyncReason::Manual)
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    assert_eq!(
        again.job_id, job,
        "the pending job is returned, not a new one"
    );
    assert!(!again.created);
    assert_eq!(env.waiting_deliveries().await, 1, "its delivery is back");
    // and only once, however many ask
    env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.waiting_deliveries().await, 1);

    let worker = env.spawn_worker();
    assert_eq!(
        env.finished(job, Duration::from_secs(60)).await.state,
        JobState::Done
    );
    assert_eq!(refs(&env.mirror_path("dave", "up")), up.refs());
    worker.stop().await;
}

/// A Redis with `appendonly` (fsync every second) killed as syncs start loses up to a
/// second of writes: the delivery, the worker's in-flight entry, the lock. Each round
/// kills it at a later point of a sync's start; every job must still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crashing_as_syncs_start_leaves_nothing_pending() {
    let mut redis = PrivateRedis::start_persistent();
    let env = TestEnv::with_redis(&redis.url()).await;
    let (owner, _) = env.user("erin", false).await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    // each round's fetch takes about a second, so Redis dies during it in most rounds
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 200_000).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    let _scheduler = Proc::spawn(&env, "stasis-scheduler", "scheduler.log", &[]);
    let mut worker = Proc::spawn(&env, "stasis-worker", "worker.log", &[]);
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(
        env.finished(import, Duration::from_secs(60)).await.state,
        JobState::Done
    );

    for round in 0..8u64 {
        up.add_blob(&format!("round{round}.bin"), 200_000);
        let job = eventually(
            "Redis to accept the job",
            Duration::from_secs(10),
            || async {
                env.jobs()
                    .request(repo, SyncReason::Manual)
                    .await
                    .ok()
                    .flatten()
            },
        )
        .await
        .job_id;
        // from the instant it is pushed to well into the attempt
        tokio::time::sleep(Duration::from_millis(round * 150)).await;
        redis.restart();
        let job = env.finished(job, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Done, "round {round}: {job:?}");
        assert_eq!(
            refs(&env.mirror_path("erin", "up")),
            up.refs(),
            "round {round}"
        );
        worker.assert_running("worker");
    }
    assert_eq!(unfinished(&env).await, 0);
}

/// The API's first request needing Redis after a restart is answered as usual: right
/// after the restart, and after a quiet spell in which nothing used the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_a_redis_restart_is_not_refused() {
    let mut redis = PrivateRedis::start();
    let env = TestEnv::with_redis(&redis.url()).await;
    let (owner, token) = env.user("fay", false).await;
    for i in 0..3 {
        let up = Upstream::create(env.dir.path().join(format!("up{i}")));
        env.mirror(&owner, &format!("m{i}"), &up.url()).await;
    }
    let port = free_port();
    let listen = [("STASIS_API_LISTEN", format!("127.0.0.1:{port}"))];
    let _api = Proc::spawn(&env, "stasis-api", "api.log", &listen);
    wait_for_port(port, "stasis-api");
    let http = reqwest::Client::new();
    let sync = |i: usize| {
        http.post(format!(
            "http://127.0.0.1:{port}/api/v1/repos/fay/m{i}/sync"
        ))
        .bearer_auth(&token)
        .send()
    };
    assert_eq!(sync(0).await.unwrap().status(), 202);

    redis.restart();
    let resp = sync(1).await.unwrap();
    assert_eq!(
        resp.status(),
        202,
        "at once: {}",
        resp.text().await.unwrap()
    );

    redis.restart();
    tokio::time::sleep(Duration::from_secs(3)).await; // the quiet spell itself
    let resp = sync(2).await.unwrap();
    assert_eq!(
        resp.status(),
        202,
        "after a quiet spell: {}",
        resp.text().await.unwrap()
    );
    // and a coalesced request (which asks Redis whether it lost data) too
    redis.restart();
    let resp = sync(2).await.unwrap();
    assert_eq!(
        resp.status(),
        202,
        "coalesced: {}",
        resp.text().await.unwrap()
    );
}
