//! Benchmark 12: what Redis holds per mirror after many sync cycles. Each cycle delivers
//! one job per mirror through apalis-redis, configured and acknowledged as the workers
//! run it (the handler is a no-op: a real sync's Redis keys besides the delivery are
//! leases that expire). Measured once as apalis-redis leaves it and once with the
//! scheduler leader's sweep run after each cycle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{BackendExt, Data, Monitor, TaskSink, WorkerBuilder};
use redis::AsyncCommands;
use stasis_shared::domain::{Lane, SyncMirror, SyncReason};
use stasis_shared::queue::{self, reclaim};
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::report::Row;
use crate::Scale;

const CONSUMERS: usize = 8;

async fn noop(_job: serde_json::Value, seen: Data<Arc<AtomicUsize>>) -> Result<(), std::io::Error> {
    seen.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// What the namespace holds: its keys, and their bytes as `MEMORY USAGE` counts them
/// (the shared Redis's `used_memory` moves with every other client's keys too).
async fn footprint(env: &TestEnv) -> anyhow::Result<(u64, u64)> {
    let mut conn = env.redis.clone();
    let keys: Vec<String> = conn.keys(format!("{}:*", env.cfg.queue.namespace)).await?;
    let mut bytes = 0;
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        bytes += sizes.into_iter().flatten().sum::<u64>();
    }
    Ok((keys.len() as u64, bytes))
}

async fn used_memory(env: &TestEnv) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut env.redis.clone())
        .await?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap_or("0");
    Ok(line.trim().parse()?)
}

struct Outcome {
    keys: u64,
    bytes: u64,
    used_memory: i64,
    swept_ms: f64,
}

/// `cycles` rounds of one delivery per mirror, each consumed to the end; the sweep after
/// each when `sweep`.
async fn cycles(mirrors: usize, cycles: usize, sweep: bool) -> anyhow::Result<Outcome> {
    let env = TestEnv::new().await;
    let before = used_memory(&env).await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let (redis, cfg) = (env.redis.clone(), env.cfg.queue.clone());
    let counter = seen.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    let monitor = tokio::spawn(
        Monitor::new()
            .register(move |i| {
                let backend: queue::ConsumerStorage =
                    queue::storage(redis.clone(), &cfg, "default", Lane::Scheduled, 100);
                WorkerBuilder::new(format!("bench-{}-{i}", Uuid::new_v4()))
                    .backend(backend.poll_with_interval(Duration::from_millis(5)))
                    .data(counter.clone())
                    .concurrency(CONSUMERS)
                    .build(noop)
            })
            .run_with_signal(async move {
                signal.cancelled().await;
                Ok(())
            }),
    );
    let repos: Vec<Uuid> = (0..mirrors).map(|_| Uuid::new_v4()).collect();
    let mut sink: queue::JobStorage = queue::storage(
        env.redis.clone(),
        &env.cfg.queue,
        "default",
        Lane::Scheduled,
        1,
    );
    let done_set = format!(
        "{}:done",
        queue::queue_name(&env.cfg.queue.namespace, "default", Lane::Scheduled)
    );
    let mut sweeping = Duration::ZERO;
    for cycle in 1..=cycles {
        let jobs: Vec<SyncMirror> = repos
            .iter()
            .map(|&repo_id| SyncMirror {
                job_id: Uuid::new_v4(),
                repo_id,
                reason: SyncReason::Scheduled,
            })
            .collect();
        for chunk in jobs.chunks(1000) {
            sink.push_bulk(chunk.to_vec()).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        // acknowledged, not only run: acks are flushed after the handler returns
        loop {
            let acked: u64 = env.redis.clone().scard(&done_set).await?;
            // the sweep empties the done set after each cycle
            let expected = if sweep { mirrors } else { cycle * mirrors };
            if seen.load(Ordering::Relaxed) >= cycle * mirrors && acked as usize >= expected {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "cycle {cycle}: {acked} acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if sweep {
            let started = Instant::now();
            let limits = reclaim::Limits::default();
            reclaim::sweep(&env.redis, &queue::Lanes::of(&env.cfg), limits, 1000).await?;
            sweeping += started.elapsed();
        }
    }
    stop.cancel();
    let _ = monitor.await;
    let (keys, bytes) = footprint(&env).await?;
    let after = used_memory(&env).await?;
    Ok(Outcome {
        keys,
        bytes,
        used_memory: after as i64 - before as i64,
        swept_ms: sweeping.as_secs_f64() * 1000.0 / cycles as f64,
    })
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (m, n) = (scale.reclaim_mirrors, scale.reclaim_cycles);
    let kept = cycles(m, n, false).await?;
    let swept = cycles(m, n, true).await?;
    let per = |v: f64| v / m as f64;
    println!(
        "  reclaim: {m} mirrors × {n} cycles; without the sweep {} keys, {} B (used_memory {:+} B); \
         with it {} keys, {} B (used_memory {:+} B); sweep {:.1} ms per cycle",
        kept.keys, kept.bytes, kept.used_memory, swept.keys, swept.bytes, swept.used_memory,
        swept.swept_ms
    );
    let figure = format!("{m} mirrors after {n} sync cycles");
    rows.push(
        Row::new(
            "12 Redis",
            &format!("keys per mirror, {figure}"),
            per(swept.keys as f64),
            "keys",
        )
        .against("apalis-redis alone", per(kept.keys as f64)),
    );
    rows.push(
        Row::new(
            "12 Redis",
            &format!("bytes per mirror, {figure}"),
            per(swept.bytes as f64),
            "B",
        )
        .against("apalis-redis alone", per(kept.bytes as f64)),
    );
    rows.push(
        Row::new(
            "12 Redis",
            &format!("used_memory growth per mirror, {figure} (shared Redis: noisy)"),
            per(swept.used_memory as f64),
            "B",
        )
        .against("apalis-redis alone", per(kept.used_memory as f64)),
    );
    rows.push(Row::new(
        "12 Redis",
        &format!("sweep of one cycle ({m} done deliveries)"),
        swept.swept_ms,
        "ms",
    ));
    Ok(())
}
