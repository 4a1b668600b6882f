//! Benchmark 4: the scheduler's tick finding and enqueueing a wall of due mirrors.

use std::time::Instant;

use anyhow::ensure;
use stasis_testkit::TestEnv;

use crate::report::Row;
use crate::Scale;

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut env = TestEnv::new().await;
    let n = scale.due_mirrors;
    // no worker drains this queue: lift the backlog bound so one tick takes them all
    // (in production the bound meters them into Redis as workers keep up)
    env.cfg.queue.max_backlog = n as u64 + 1;
    env.cfg.scheduler.batch_size = 10_000;
    let (owner, _) = env.user("fleet", false).await;
    env.due_mirrors(&owner, n).await;
    sqlx::query("ANALYZE repositories")
        .execute(&env.pool)
        .await?;

    let started = Instant::now();
    let tick = stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.enqueuer())
        .await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        tick.enqueued as usize == n,
        "enqueued {} of {n}",
        tick.enqueued
    );
    rows.push(
        Row::new(
            "4 scheduler",
            &format!("{n} due mirrors found and enqueued"),
            secs,
            "s",
        )
        .target(if n >= 100_000 { "< 5 s" } else { "" }),
    );
    rows.push(Row::new(
        "4 scheduler",
        "enqueue rate",
        n as f64 / secs,
        "mirrors/s",
    ));
    Ok(())
}
