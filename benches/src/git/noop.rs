//! Benchmark 1: no-op syncs of up-to-date mirrors, end to end (scheduler claim → done),
//! against a `git fetch` loop and a libgit2 ref-listing loop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::baselines::{cli_fetch_loop, git2_list_loop};
use super::{bench_with_m0, start_worker, Bench, DAEMON_HOSTS, WAIT};
use crate::cpu::{listen_overflows, Cpu};
use crate::fixture::copy_dir;
use crate::pin::Pinning;
use crate::report::Row;
use crate::Scale;

/// Unchanged checks recorded, each one counted whatever run it is counted in.
pub(crate) async fn unchanged_checks(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(sum(checks), 0)::bigint FROM unchanged_checks")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until the jobs a tick opened have all ended (none pending or running: counting
/// done jobs would not do, since an unchanged check that folds deletes the job of the
/// one before it); returns when the last of them finished, by the database's clock, so
/// polling slowly (not to compete with the syncs it times) costs no precision.
pub(super) async fn wait_done(pool: &PgPool) -> anyhow::Result<DateTime<Utc>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (active, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'running')),
                    max(finished_at) FILTER (WHERE state = 'done')
             FROM sync_jobs",
        )
        .fetch_one(pool)
        .await?;
        if active == 0 {
            return last.context("finished jobs have a finish time");
        }
        ensure!(Instant::now() < deadline, "syncs did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The host's CPU counters once the processes a phase forked have been reaped.
async fn settled_cpu() -> Cpu {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Cpu::now()
}

/// Benchmark 1: no-op syncs of up-to-date mirrors, end to end (scheduler claim → done).
pub async fn run_noop(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (
        Bench {
            env,
            medium: _medium,
            daemon,
            http: _http,
            url: _,
            owner,
        },
        _first,
    ) = bench_with_m0(scale).await?;
    let m0 = env.mirror_path("bench", "m0");
    // mirror i fetches from the daemon's address i, round robin
    for i in 1..scale.mirrors {
        let name = format!("m{i}");
        env.mirror(&owner, &name, &daemon.url_on(i, "medium")).await;
        copy_dir(&m0, &env.mirror_path("bench", &name));
    }
    let names: Vec<String> = (0..scale.mirrors).map(|i| format!("m{i}")).collect();
    let mirrors: Vec<(PathBuf, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (env.mirror_path("bench", n), daemon.url_on(i, "medium")))
        .collect();
    let urls: Vec<String> = (0..DAEMON_HOSTS.len())
        .map(|i| daemon.url_on(i, "medium"))
        .collect();
    let n = scale.mirrors;
    // the upstream on a CPU of its own from here on, as another machine would be
    let _pinned = Pinning::upstream_apart(daemon.pid())?;
    // The host's speed drifts over tens of seconds: the pipeline and the loops it is
    // compared with take turns on a share of the mirrors each round, so that drift
    // lands on both sides of every ratio.
    let share = n.div_ceil(scale.rounds.max(1));
    for &parallelism in &scale.parallelism {
        let worker = start_worker(&env, parallelism);
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("no-op syncs of {n} mirrors at parallelism {parallelism}, {share} a round");
        let unchanged_before = unchanged_checks(&env.pool).await?;
        let (mut ours_secs, mut v0_secs, mut list_secs) = (0.0, 0.0, 0.0);
        let (mut ours_cpu, mut list_cpu, mut v0_cpu) =
            (Cpu::default(), Cpu::default(), Cpu::default());
        let (mut ours_drops, mut list_drops) = (0, 0);
        for (names, mirrors) in names.chunks(share).zip(mirrors.chunks(share)) {
            let count = names.len();
            sqlx::query(
                "UPDATE repositories SET next_sync_at = now() - interval '1 second'
                 WHERE name = ANY($1)",
            )
            .bind(names)
            .execute(&env.pool)
            .await?;
            let started: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
                .fetch_one(&env.pool)
                .await?;
            let (cpu_before, drops_before) = (Cpu::now(), listen_overflows());
            let tick =
                stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
                    .await?;
            ensure!(
                tick.enqueued as usize == count,
                "enqueued {}",
                tick.enqueued
            );
            let last = wait_done(&env.pool).await?;
            ours_cpu.add_span(&cpu_before, &settled_cpu().await);
            ours_drops += listen_overflows() - drops_before;
            ours_secs += (last - started).num_microseconds().unwrap_or(1) as f64 / 1e6;

            let cpu_before = Cpu::now();
            v0_secs += cli_fetch_loop(mirrors, parallelism, true)?;
            v0_cpu.add_span(&cpu_before, &settled_cpu().await);
            let (cpu_before, drops_before) = (Cpu::now(), listen_overflows());
            list_secs += git2_list_loop(&urls, count, parallelism)?;
            list_cpu.add_span(&cpu_before, &settled_cpu().await);
            list_drops += listen_overflows() - drops_before;
        }
        worker.stop().await;
        let unchanged = unchanged_checks(&env.pool).await? - unchanged_before;
        ensure!(unchanged as usize >= n, "only {unchanged} unchanged checks");
        let (ours_cpu, list_cpu, v0_cpu) =
            (ours_cpu.per_op(n), list_cpu.per_op(n), v0_cpu.per_op(n));
        println!("pipeline, per no-op sync: {ours_cpu}");
        println!("git fetch v0 loop, per fetch (its git processes are this process's children): {v0_cpu}");
        println!("git2 listing loop, per listing: {list_cpu}");
        // Both sides use nearly all of the host's cores, so their throughput ratio is
        // close to the inverse ratio of their CPU per operation: the bookkeeping a no-op
        // sync may cost above its listing, for the 0.8× target, follows.
        println!(
            "CPU above the listing: {:.2} ms per sync; 0.8× the listing loop allows {:.2} ms",
            ours_cpu.total() - list_cpu.total(),
            list_cpu.total() / 0.8 - list_cpu.total()
        );
        println!(
            "connections git daemon's accept queue dropped (1 s stall each): \
             pipeline {ours_drops}, listing loop {list_drops}"
        );
        let (ours, v0, list) = (
            n as f64 / ours_secs,
            n as f64 / v0_secs,
            n as f64 / list_secs,
        );
        // far slower than the others and far from its target: once, not in turns
        let v2 = n as f64 / cli_fetch_loop(&mirrors, parallelism, false)?;
        let figure = format!("no-op syncs, P={parallelism}");
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git fetch v2 loop", v2)
                .target("≥ 2×"),
        );
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git fetch v0 loop", v0)
                .target("≥ 2×"),
        );
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git2 listing loop", list)
                .target("≥ 0.8×"),
        );
        rows.push(
            Row::new(
                "1 no-op",
                &format!("client-side CPU per no-op sync, P={parallelism}"),
                ours_cpu.client(),
                "ms",
            )
            .against("git fetch v0, client side", v0_cpu.client())
            .target("≤ 0.5×"),
        );
        let figure = format!("CPU per no-op sync, P={parallelism}");
        rows.push(
            Row::new("1 no-op", &figure, ours_cpu.total(), "ms")
                .against("git2 listing loop", list_cpu.total()),
        );
    }
    Ok(())
}
