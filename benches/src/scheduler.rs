//! Benchmark 4: the scheduler's tick finding and enqueueing a wall of due mirrors, at two
//! sizes ten times apart (100,000 and 1,000,000 in the full run), each in a database of
//! its own; and what Postgres stores per mirror and per job.

use std::time::Instant;

use anyhow::ensure;
use stasis_testkit::TestEnv;

use crate::cpu::Cpu;
use crate::report::Row;
use crate::Scale;

/// One tick over `n` due mirrors: seconds, and bytes on disk (tables, indexes, TOAST)
/// per mirror and per job once the tick has opened a job for each.
struct Tick {
    secs: f64,
    bytes_per_mirror: f64,
    bytes_per_job: f64,
    /// Write-ahead log the tick wrote, per mirror, and the checkpoints it set off
    /// (server-wide figures: other databases' writes count too).
    wal_per_mirror: f64,
    checkpoints: i64,
    /// CPU (ms) per 1,000 mirrors by process group, to tell a slower Postgres from a
    /// slower Redis.
    cpu: Cpu,
}

/// The server's WAL position (bytes) and checkpoints so far, timed and requested.
async fn wal_state(pool: &sqlx::PgPool) -> sqlx::Result<(f64, i64)> {
    sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8,
                checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
    )
    .fetch_one(pool)
    .await
}

async fn tick(n: usize) -> anyhow::Result<Tick> {
    let mut env = TestEnv::new().await;
    // no worker drains this queue: lift the backlog bound so one tick takes them all
    // (in production the bound meters them into Redis as workers keep up)
    env.cfg.queue.max_backlog = n as u64 + 1;
    env.cfg.scheduler.batch_size = 10_000;
    let (owner, _) = env.user("fleet", false).await;
    env.due_mirrors(&owner, n).await;
    sqlx::query("VACUUM ANALYZE repositories")
        .execute(&env.pool)
        .await?;

    let (wal_before, checkpoints_before) = wal_state(&env.pool).await?;
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let tick =
        stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs()).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut cpu = Cpu::default();
    cpu.add_span(&cpu_before, &Cpu::now());
    let (wal_after, checkpoints_after) = wal_state(&env.pool).await?;
    ensure!(
        tick.enqueued as usize == n,
        "enqueued {} of {n}",
        tick.enqueued
    );
    let (repos, jobs): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('repositories'), pg_total_relation_size('sync_jobs')",
    )
    .fetch_one(&env.pool)
    .await?;
    env.forget_redis().await;
    Ok(Tick {
        secs,
        bytes_per_mirror: repos as f64 / n as f64,
        bytes_per_job: jobs as f64 / n as f64,
        wal_per_mirror: (wal_after - wal_before) / n as f64,
        checkpoints: checkpoints_after - checkpoints_before,
        cpu: {
            // milliseconds per 1,000 mirrors
            let per = cpu.per_op(n);
            Cpu {
                bench: per.bench * 1e3,
                daemon: per.daemon * 1e3,
                postgres: per.postgres * 1e3,
                redis: per.redis * 1e3,
            }
        },
    })
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let large = scale.due_mirrors;
    let small = large / 10;
    let small_tick = tick(small).await?;
    let large_tick = tick(large).await?;
    for (n, t) in [(small, &small_tick), (large, &large_tick)] {
        println!(
            "{n} due: {:.1} s, {:.0} B of WAL per mirror, {} checkpoints during the tick; \
             per 1,000 mirrors: {}",
            t.secs, t.wal_per_mirror, t.checkpoints, t.cpu
        );
    }
    rows.push(
        Row::new(
            "4 scheduler",
            &format!("{small} due mirrors found and enqueued"),
            small_tick.secs,
            "s",
        )
        .target(if small >= 100_000 { "< 5 s" } else { "" }),
    );
    rows.push(
        Row::new(
            "4 scheduler",
            &format!("{large} due mirrors found and enqueued"),
            large_tick.secs,
            "s",
        )
        .against(&format!("{small} due mirrors"), small_tick.secs)
        .target("≤ 10×"),
    );
    rows.push(Row::new(
        "4 scheduler",
        &format!("enqueue rate, {large} due"),
        large as f64 / large_tick.secs,
        "mirrors/s",
    ));
    rows.push(Row::new(
        "4 scheduler",
        &format!("Postgres bytes per mirror, {large} mirrors"),
        large_tick.bytes_per_mirror,
        "B",
    ));
    rows.push(Row::new(
        "4 scheduler",
        &format!("Postgres bytes per open job, {large} jobs"),
        large_tick.bytes_per_job,
        "B",
    ));
    rows.push(
        Row::new(
            "4 scheduler",
            &format!("WAL written per mirror, {large} due"),
            large_tick.wal_per_mirror,
            "B",
        )
        .against(&format!("{small} due"), small_tick.wal_per_mirror),
    );
    Ok(())
}
