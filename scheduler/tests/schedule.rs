//! The scheduler against real Postgres and Redis.

use std::time::Duration;

use stasis_scheduler::due::enqueue_due;
use stasis_shared::db::settings;
use stasis_shared::domain::{SyncReason, SyncStatus};
use stasis_shared::{queue, scheduler_status};
use stasis_testkit::{eventually, throughout, TestEnv};
use uuid::Uuid;

async fn set_next_sync(env: &TestEnv, repo: Uuid, offset_secs: i64) {
    sqlx::query(
        "UPDATE repositories SET next_sync_at = now() + make_interval(secs => $2) WHERE id = $1",
    )
    .bind(repo)
    .bind(offset_secs as f64)
    .execute(&env.pool)
    .await
    .unwrap();
}

async fn job_reasons(env: &TestEnv, repo: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT reason FROM sync_jobs WHERE repo_id = $1 ORDER BY enqueued_at")
        .bind(repo)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn enqueues_due_mirrors_and_only_them() {
    let env = TestEnv::new().await;
    let (owner, _) = env.user("sched", false).await;
    let due = env.mirror(&owner, "due", "file:///x").await;
    let later = env.mirror(&owner, "later", "file:///x").await;
    let busy = env.mirror(&owner, "busy", "file:///x").await;
    let paused = env.mirror(&owner, "paused", "file:///x").await;
    let never = env.mirror(&owner, "never", "file:///x").await; // next_sync_at NULL: import pending
    set_next_sync(&env, due, -5).await;
    set_next_sync(&env, later, 3600).await;
    set_next_sync(&env, busy, -5).await;
    set_next_sync(&env, paused, -5).await;
    sqlx::query("UPDATE repositories SET mirror_enabled = false WHERE id = $1")
        .bind(paused)
        .execute(&env.pool)
        .await
        .unwrap();
    let existing = env.enqueue(busy, SyncReason::Manual).await;

    let report = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(report.enqueued, 1);
    assert_eq!(job_reasons(&env, due).await, ["scheduled"]);
    assert_eq!(env.repo(due).await.sync_status, SyncStatus::Queued);
    for repo in [later, paused, never] {
        assert!(job_reasons(&env, repo).await.is_empty());
    }
    assert_eq!(
        job_reasons(&env, busy).await,
        ["manual"],
        "no second job next to {existing}"
    );
    assert_eq!(env.waiting_deliveries().await, 2);

    // a second tick finds nothing new: the due mirror has its job
    let again = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(again.enqueued, 0);
}

#[tokio::test]
async fn large_batches_are_claimed_in_parallel_halves_one_job_per_mirror() {
    let mut env = TestEnv::new().await;
    // 4,000 a batch: claimed as two statements of 2,000 on two connections
    env.cfg.scheduler.batch_size = 4000;
    env.cfg.queue.max_backlog = 7000;
    let (owner, _) = env.user("halves", false).await;
    env.due_mirrors(&owner, 5_000).await;

    let report = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!((report.enqueued, report.waves), (5000, 2), "{report:?}");
    assert!(!report.backlog_full);
    let (jobs, mirrors, queued): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT j.repo_id),
                count(*) FILTER (WHERE r.sync_status = 'queued')
         FROM sync_jobs j JOIN repositories r ON r.id = j.repo_id WHERE j.state = 'pending'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((jobs, mirrors, queued), (5000, 5000, 5000));
    assert_eq!(env.waiting_deliveries().await, 5000);
}

#[tokio::test]
async fn each_claim_of_a_tick_starts_where_the_last_stopped_and_a_held_mirror_waits_a_tick() {
    let mut env = TestEnv::new().await;
    env.cfg.scheduler.batch_size = 100;
    let (owner, _) = env.user("waves", false).await;
    // all due at the same instant: batches end inside a run of equal `next_sync_at`
    env.due_mirrors(&owner, 350).await;
    // another transaction holds one mirror's row, as an API request updating it would
    let held: Uuid = sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'm7'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let mut tx = env.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM repositories WHERE id = $1 FOR UPDATE")
        .bind(held)
        .execute(&mut *tx)
        .await
        .unwrap();

    let report = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!((report.enqueued, report.waves), (349, 4), "{report:?}");
    assert!(job_reasons(&env, held).await.is_empty());
    tx.rollback().await.unwrap();

    let next = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(next.enqueued, 1);
    assert_eq!(job_reasons(&env, held).await, ["scheduled"]);
    let (jobs, mirrors): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT repo_id) FROM sync_jobs")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((jobs, mirrors), (350, 350));
    assert_eq!(env.waiting_deliveries().await, 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_due_mirrors_are_pushed_in_waves_under_the_backlog_bound() {
    let mut env = TestEnv::new().await;
    env.cfg.queue.max_backlog = 3000;
    let (owner, _) = env.user("bulk", false).await;
    env.due_mirrors(&owner, 10_000).await;

    let report = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(report.enqueued, 3000);
    assert!(report.backlog_full);
    assert!(
        report.waves >= 3,
        "batches of {}: {report:?}",
        env.cfg.scheduler.batch_size
    );
    let backlog = queue::backlog(&env.redis, &queue::Lanes::of(&env.cfg))
        .await
        .unwrap();
    assert_eq!(backlog, 3000);

    // workers take jobs from this backlog (apalis-redis breaks at ~8,000 due ids) and the
    // scheduler refills it as they drain; every mirror gets exactly one job
    env.cfg.worker.concurrency = 16;
    let worker = env.spawn_worker();
    let scheduler = env.spawn_scheduler();
    let max_backlog = std::sync::atomic::AtomicU64::new(backlog);
    eventually(
        "all 10,000 mirrors to be synced once",
        Duration::from_secs(240),
        || async {
            let b = queue::backlog(&env.redis, &queue::Lanes::of(&env.cfg))
                .await
                .unwrap();
            max_backlog.fetch_max(b, std::sync::atomic::Ordering::SeqCst);
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state = 'failed'")
                    .fetch_one(&env.pool)
                    .await
                    .unwrap();
            (done == 10_000).then_some(())
        },
    )
    .await;
    let max_backlog = max_backlog.into_inner();
    assert!(max_backlog <= 3000, "backlog reached {max_backlog}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 10_000);
    scheduler.stop().await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_at_a_time_and_a_standby_takes_over() {
    let env = TestEnv::new().await;
    let key = format!("{}:scheduler:leader", env.cfg.queue.namespace);
    let holder = || async {
        let token: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut env.redis.clone())
            .await
            .unwrap();
        token
    };
    let first = env.spawn_scheduler();
    let leader = eventually("a leader", Duration::from_secs(10), holder).await;
    let second = env.spawn_scheduler();
    // two lease TTLs with a stand-by trying: the lease never lapses nor changes hands
    throughout(
        "leadership staying with the living leader",
        env.cfg.scheduler.lease_ttl * 2,
        || async { holder().await.as_deref() == Some(leader.as_str()) },
    )
    .await;

    first.stop().await;
    let successor = eventually("the stand-by to lead", Duration::from_secs(10), || async {
        holder().await.filter(|t| *t != leader)
    })
    .await;
    assert_ne!(successor, leader);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scheduler_enqueues_nothing_and_publishes_its_status() {
    let env = TestEnv::new().await;
    let (owner, _) = env.user("sched", false).await;
    let due = env.mirror(&owner, "due", "file:///x").await;
    set_next_sync(&env, due, -5).await;
    settings::set_scheduler_paused(&env.pool, true)
        .await
        .unwrap();

    let scheduler = env.spawn_scheduler();
    let status = eventually(
        "the leader to publish its status",
        Duration::from_secs(10),
        || async {
            scheduler_status::read(&env.redis, &env.cfg.queue.namespace)
                .await
                .unwrap()
                .filter(|s| s.next_tick_at.is_some())
        },
    )
    .await;
    assert!(!status.leader.is_empty());
    assert_eq!(status.last_tick_at, None, "paused: no tick ran");
    // several ticks (200 ms each) go by while paused: each one skipped moves the
    // published next tick on
    let first_next = status.next_tick_at.expect("next tick published");
    let ticks = chrono::Duration::from_std(env.cfg.scheduler.tick * 4).unwrap();
    eventually(
        "four ticks to go by while paused",
        Duration::from_secs(10),
        || async {
            scheduler_status::read(&env.redis, &env.cfg.queue.namespace)
                .await
                .unwrap()
                .and_then(|s| s.next_tick_at)
                .filter(|&next| next >= first_next + ticks)
        },
    )
    .await;
    assert_eq!(
        scheduler_status::read(&env.redis, &env.cfg.queue.namespace)
            .await
            .unwrap()
            .and_then(|s| s.last_tick_at),
        None,
        "paused: no tick ran"
    );
    assert!(
        job_reasons(&env, due).await.is_empty(),
        "paused scheduler enqueued"
    );

    settings::set_scheduler_paused(&env.pool, false)
        .await
        .unwrap();
    eventually(
        "the due mirror to be enqueued once resumed",
        Duration::from_secs(10),
        || async { (job_reasons(&env, due).await == ["scheduled"]).then_some(()) },
    )
    .await;
    let status = eventually(
        "a tick to be published",
        Duration::from_secs(10),
        || async {
            scheduler_status::read(&env.redis, &env.cfg.queue.namespace)
                .await
                .unwrap()
                .filter(|s| s.last_tick_at.is_some())
        },
    )
    .await;
    assert!(status.next_tick_at >= status.last_tick_at);

    scheduler.stop().await;
}
