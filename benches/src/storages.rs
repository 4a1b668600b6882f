//! Named storages: what a storage more costs per sync, and how fast mirrors move.
//!
//! 1. The scheduler's tick over the same due mirrors spread over 1 and over 4 storages
//!    (each storage its own lanes, one routing query per wave): time per mirror.
//! 2. No-op syncs of the same up-to-date mirrors on 1 and on 4 storages, one in-process
//!    worker serving them all: wall time and CPU per sync.
//! 3. Moves of small mirrors from one storage to another by a worker of the target:
//!    mirrors moved per minute.

use std::time::{Duration, Instant};

use anyhow::ensure;
use stasis_shared::config::NamedStorage;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::TestEnv;

use crate::cpu::Cpu;
use crate::report::Row;
use crate::Scale;

const WAIT: Duration = Duration::from_secs(600);

/// `count` storages `s0`…, each a directory of the environment's.
fn storages(env: &mut TestEnv, count: usize) {
    env.cfg.storage.storages.clear();
    if count == 1 {
        return;
    }
    for i in 0..count {
        env.cfg.storage.storages.insert(
            format!("s{i}"),
            NamedStorage {
                root: env.dir.path().join(format!("storage-{i}")),
                weight: 1,
                read_only: false,
            },
        );
    }
}

/// Spreads every mirror over the configured storages, round robin.
async fn spread(env: &TestEnv) -> anyhow::Result<()> {
    let names = env.cfg.storage.names();
    sqlx::query(
        "UPDATE repositories r SET storage = ($1::text[])[1 + (n.k % cardinality($1::text[]))]
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM repositories) n
         WHERE r.id = n.id",
    )
    .bind(&names)
    .execute(&env.pool)
    .await?;
    Ok(())
}

/// Milliseconds per 1,000 due mirrors for one tick over `n` of them on `count` storages.
async fn tick(n: usize, count: usize) -> anyhow::Result<f64> {
    let mut env = TestEnv::new().await;
    storages(&mut env, count);
    // no worker drains the lanes: lift their bound so one tick takes every mirror (as
    // the scheduler benchmark does)
    env.cfg.queue.max_backlog = n as u64 + 1;
    env.cfg.scheduler.batch_size = 10_000;
    let (owner, _) = env.user("fleet", false).await;
    env.due_mirrors(&owner, n).await;
    spread(&env).await?;
    sqlx::query("VACUUM ANALYZE repositories")
        .execute(&env.pool)
        .await?;
    let started = Instant::now();
    let t =
        stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs()).await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(t.enqueued as usize == n, "enqueued {} of {n}", t.enqueued);
    env.forget_redis().await;
    Ok(secs / n as f64 * 1e6)
}

/// No-op syncs of `n` up-to-date mirrors on `count` storages: seconds and CPU (ms) per
/// sync.
async fn noop(n: usize, count: usize) -> anyhow::Result<(f64, f64)> {
    let mut env = TestEnv::new().await;
    storages(&mut env, count);
    env.cfg.worker.concurrency = 8;
    let served = env.dir.path().join("served");
    let _up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("bench", false).await;
    let names = env.cfg.storage.names();
    let mut repos = Vec::new();
    for i in 0..n {
        let storage = &names[i % names.len()];
        repos.push(
            env.mirror_on(storage, &owner, &format!("m{i}"), &daemon.url("up"))
                .await,
        );
    }
    let worker = InProcessWorker::start(env.cfg.clone(), env.pool.clone(), env.redis.clone());
    // imported once; the timed round finds every upstream unchanged
    let jobs = env.jobs();
    for &repo in &repos {
        jobs.request(repo, SyncReason::Import).await?;
    }
    wait_idle(&env, n as i64).await?;
    let cpu_before = Cpu::now();
    let started = Instant::now();
    for &repo in &repos {
        jobs.request(repo, SyncReason::Manual).await?;
    }
    wait_idle(&env, 2 * n as i64).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut cpu = Cpu::default();
    cpu.add_span(&cpu_before, &Cpu::now());
    worker.stop().await;
    Ok((secs / n as f64, cpu.per_op(n).total()))
}

/// Waits until `done` jobs are done and none is pending or running.
async fn wait_idle(env: &TestEnv, done: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (finished, open): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'done'),
                    count(*) FILTER (WHERE state IN ('pending', 'running'))
             FROM sync_jobs",
        )
        .fetch_one(&env.pool)
        .await?;
        if finished >= done && open == 0 {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{finished} of {done} syncs done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mirrors moved per minute: `n` small mirrors from `s0` to `s1`, one worker per storage.
async fn moves(n: usize) -> anyhow::Result<f64> {
    let mut env = TestEnv::new().await;
    storages(&mut env, 2);
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    up.add_blobs("files", 20, 2_000);
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("bench", false).await;
    let mut repos = Vec::new();
    for i in 0..n {
        repos.push(
            env.mirror_on("s0", &owner, &format!("m{i}"), &daemon.url("up"))
                .await,
        );
    }
    let workers: Vec<InProcessWorker> = ["s0", "s1"]
        .into_iter()
        .map(|s| {
            let mut cfg = env.cfg.clone();
            cfg.worker.storages = vec![s.to_owned()];
            cfg.worker.concurrency = 4;
            InProcessWorker::start(cfg, env.pool.clone(), env.redis.clone())
        })
        .collect();
    let jobs = env.jobs();
    for &repo in &repos {
        jobs.request(repo, SyncReason::Import).await?;
    }
    wait_idle(&env, n as i64).await?;
    let started = Instant::now();
    let drained =
        stasis_shared::moves::drain(&env.cfg, &env.pool, &jobs, "s0", Some("s1"), None, n as i64)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(drained.moving == n, "{} of {n} moving", drained.moving);
    let deadline = Instant::now() + WAIT;
    loop {
        let on_target: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM repositories WHERE storage = 's1' AND move_to IS NULL",
        )
        .fetch_one(&env.pool)
        .await?;
        if on_target == n as i64 {
            break;
        }
        ensure!(Instant::now() < deadline, "{on_target} of {n} moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per_minute = n as f64 / started.elapsed().as_secs_f64() * 60.0;
    for worker in workers {
        worker.stop().await;
    }
    Ok(per_minute)
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let due = scale.storage_due_mirrors;
    let one = tick(due, 1).await?;
    let four = tick(due, 4).await?;
    println!(
        "scheduler tick, {due} due mirrors: {one:.1} ms per 1,000 on 1 storage, {four:.1} on 4"
    );
    rows.push(
        Row::new(
            "storages",
            &format!("tick per 1,000 due of {due}, 4 storages"),
            four,
            "ms",
        )
        .against("1 storage", one)
        .target("≤ 1.1×"),
    );
    let n = scale.storage_mirrors;
    let (one_secs, one_cpu) = noop(n, 1).await?;
    let (four_secs, four_cpu) = noop(n, 4).await?;
    println!(
        "no-op syncs of {n} mirrors: {:.2} ms wall, {one_cpu:.2} ms CPU per sync on 1 storage; \
         {:.2} ms wall, {four_cpu:.2} ms CPU on 4",
        one_secs * 1e3,
        four_secs * 1e3
    );
    rows.push(
        Row::new(
            "storages",
            &format!("CPU per no-op sync of {n}, 4 storages"),
            four_cpu,
            "ms",
        )
        .against("1 storage", one_cpu)
        .target("≤ 1.1×"),
    );
    rows.push(
        Row::new(
            "storages",
            &format!("wall time per no-op sync of {n}, 4 storages"),
            four_secs * 1e3,
            "ms",
        )
        .against("1 storage", one_secs * 1e3)
        .target("≤ 1.1×"),
    );
    let moved = moves(scale.storage_moves).await?;
    println!(
        "moves of {} small mirrors: {moved:.0} a minute",
        scale.storage_moves
    );
    rows.push(Row::new(
        "storages",
        &format!(
            "small mirrors moved, {} by 4 syncs at once",
            scale.storage_moves
        ),
        moved,
        "per minute",
    ));
    Ok(())
}
