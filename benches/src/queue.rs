//! Benchmark 3: no-op jobs through apalis-redis (configured as the workers run it)
//! against raw Redis list operations (LMOVE to an in-flight list, LREM to acknowledge).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{BackendExt, Data, Monitor, TaskSink, WorkerBuilder};
use redis::AsyncCommands;
use stasis_shared::domain::{Lane, SyncMirror, SyncReason};
use stasis_shared::queue;
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::report::Row;
use crate::Scale;

const CONSUMERS: usize = 8;

async fn noop(_job: serde_json::Value, seen: Data<Arc<AtomicUsize>>) -> Result<(), std::io::Error> {
    seen.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// apalis-redis 1.0 fails every fetch once 8,000 or more jobs are due in its scheduled
/// set (see the notes), so jobs go in waves under that, as the scheduler sends them.
const WAVE: usize = 5_000;

async fn apalis_rate(env: &TestEnv, n: usize) -> anyhow::Result<(f64, f64)> {
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

    let mut sink: queue::JobStorage = queue::storage(
        env.redis.clone(),
        &env.cfg.queue,
        "default",
        Lane::Scheduled,
        1,
    );
    let (mut pushing, mut consuming) = (Duration::ZERO, Duration::ZERO);
    let mut pushed = 0;
    while pushed < n {
        let wave: Vec<SyncMirror> = (0..WAVE.min(n - pushed))
            .map(|_| SyncMirror {
                job_id: Uuid::new_v4(),
                repo_id: Uuid::new_v4(),
                reason: SyncReason::Scheduled,
            })
            .collect();
        pushed += wave.len();
        let started = Instant::now();
        for chunk in wave.chunks(1000) {
            sink.push_bulk(chunk.to_vec()).await?;
        }
        pushing += started.elapsed();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        while seen.load(Ordering::Relaxed) < pushed {
            ensure!(
                Instant::now() < deadline,
                "apalis consumed only {seen:?} of {pushed}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        consuming += started.elapsed();
    }
    stop.cancel();
    let _ = monitor.await;
    Ok((
        n as f64 / pushing.as_secs_f64(),
        n as f64 / consuming.as_secs_f64(),
    ))
}

async fn raw_rate(env: &TestEnv, n: usize) -> anyhow::Result<f64> {
    let ready = format!("{}:raw:ready", env.cfg.queue.namespace);
    let mut conn = env.redis.clone();
    let payload = serde_json::to_string(&SyncMirror {
        job_id: Uuid::new_v4(),
        repo_id: Uuid::new_v4(),
        reason: SyncReason::Scheduled,
    })?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.lpush(&ready, format!("{i}:{payload}")).ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
    }
    let started = Instant::now();
    let consumers = (0..CONSUMERS).map(|c| {
        let (mut conn, ready) = (env.redis.clone(), ready.clone());
        let inflight = format!("{ready}:inflight:{c}");
        async move {
            loop {
                let job: Option<String> = conn
                    .lmove(
                        &ready,
                        &inflight,
                        redis::Direction::Right,
                        redis::Direction::Left,
                    )
                    .await?;
                let Some(job) = job else { break };
                let _: i64 = conn.lrem(&inflight, 1, job).await?;
            }
            Ok::<_, redis::RedisError>(())
        }
    });
    for result in futures::future::join_all(consumers).await {
        result?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let n = scale.queue_jobs;
    let (enqueue, consume) = apalis_rate(&env, n).await?;
    let raw = raw_rate(&env, n).await?;
    let figure = format!("{n} no-op jobs in waves of {WAVE}, {CONSUMERS} consumers");
    rows.push(
        Row::new("3 queue", &figure, consume, "jobs/s")
            .against("raw LMOVE+LREM", raw)
            .target("≥ 0.5×"),
    );
    rows.push(Row::new(
        "3 queue",
        "enqueue (push_bulk of 1000)",
        enqueue,
        "jobs/s",
    ));
    Ok(())
}
