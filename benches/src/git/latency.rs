//! Benchmark 11: latency hidden by concurrency. Every round trip between the workers and
//! the upstream takes 40 ms more (a delaying proxy on loopback, on the upstream's CPU);
//! no-op syncs of many mirrors at several worker concurrencies, beside a `git fetch`
//! loop at the same parallelism. Each sync costs a few round trips of waiting and
//! little CPU, so throughput should grow with concurrency until a CPU is the bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use stasis_testkit::latency::LatencyProxy;

use super::baselines::cli_fetch_loop;
use super::{bench_with_m0, start_worker, Bench, DAEMON_HOSTS};
use crate::cpu::{listen_overflows, thread_seconds, Cpu};
use crate::fixture::copy_dir;
use crate::pin::{self, Pinning};
use crate::report::Row;
use crate::Scale;

pub const RTT: Duration = Duration::from_millis(40);

/// The proxy on a thread and runtime of its own, so that it can be pinned with the
/// upstream: it stands for the network, not for the client. Stops with the sender.
pub(crate) fn proxy_thread(
    targets: Vec<SocketAddr>,
) -> anyhow::Result<(SocketAddr, u32, tokio::sync::oneshot::Sender<()>)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        runtime.block_on(async move {
            let proxy = LatencyProxy::start(targets, RTT).await;
            let _ = ready_tx.send(
                proxy
                    .as_ref()
                    .map(|p| (p.addr, pin::thread_id()))
                    .map_err(|e| e.to_string()),
            );
            let _ = stop_rx.await;
            drop(proxy);
        });
    });
    let (addr, tid) = ready_rx
        .recv()
        .context("proxy thread")?
        .map_err(|e| anyhow::anyhow!("proxy: {e}"))?;
    Ok((addr, tid, stop_tx))
}

pub async fn run_latency(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (
        Bench {
            env,
            medium: _medium,
            daemon,
            http: _http,
            url: _,
            owner,
        },
        first,
    ) = bench_with_m0(scale).await?;
    let targets: Vec<SocketAddr> = DAEMON_HOSTS
        .iter()
        .map(|h| format!("{h}:{}", daemon.port).parse())
        .collect::<Result<_, _>>()?;
    let (proxy, proxy_tid, stop_proxy) = proxy_thread(targets)?;
    let proxied = format!("git://{proxy}/medium");
    let n = scale.latency_mirrors;
    sqlx::query("UPDATE repositories SET mirror_url = $1 WHERE id = $2")
        .bind(&proxied)
        .bind(first)
        .execute(&env.pool)
        .await?;
    let m0 = env.mirror_path("bench", "m0");
    for i in 1..n {
        let name = format!("m{i}");
        env.mirror(&owner, &name, &proxied).await;
        copy_dir(&m0, &env.mirror_path("bench", &name));
    }
    let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let mirrors: Vec<(PathBuf, String)> = names
        .iter()
        .map(|name| (env.mirror_path("bench", name), proxied.clone()))
        .collect();
    let pinned = Pinning::upstream_apart(daemon.pid())?;
    if let Some(pinned) = &pinned {
        pinned.to_upstream(proxy_tid)?;
    }
    println!(
        "no-op syncs of {n} mirrors through a proxy adding {} ms to each round trip",
        RTT.as_millis()
    );
    for &concurrency in &scale.latency_concurrency {
        let worker = start_worker(&env, concurrency);
        tokio::time::sleep(Duration::from_millis(500)).await;
        sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second'")
            .execute(&env.pool)
            .await?;
        let drops = listen_overflows();
        let (daemon_before, proxy_before) = (Cpu::now().daemon, thread_seconds(proxy_tid));
        let started: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&env.pool)
            .await?;
        let tick = stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
            .await?;
        ensure!(tick.enqueued as usize == n, "enqueued {}", tick.enqueued);
        let last = super::noop::wait_done(&env.pool).await?;
        worker.stop().await;
        // git daemon and its upload-packs, and the proxy: the upstream's core
        let per_sync = |secs: f64| secs * 1e3 / n as f64;
        let daemon_ms = per_sync(Cpu::now().daemon - daemon_before);
        let proxy_ms = per_sync(thread_seconds(proxy_tid) - proxy_before);
        let upstream_ms = daemon_ms + proxy_ms;
        let secs = (last - started).num_microseconds().unwrap_or(1) as f64 / 1e6;
        let ours = n as f64 / secs;
        let cli = n as f64 / cli_fetch_loop(&mirrors, concurrency, true)?;
        let dropped = listen_overflows() - drops;
        // one core for the upstream: the most listings a second it can answer
        let upstream_bound = 1e3 / upstream_ms.max(1e-3);
        println!(
            "concurrency {concurrency}: {ours:.0} syncs/s, git fetch v0 loop {cli:.0}/s; \
             connections dropped by a full accept queue: {dropped}; upstream CPU \
             {upstream_ms:.2} ms a sync (git daemon {daemon_ms:.2}, proxy {proxy_ms:.2}), \
             so at most \
             {upstream_bound:.0} syncs/s from its core"
        );
        let bound = concurrency as f64 / RTT.as_secs_f64();
        let figure = format!(
            "no-op syncs, {} ms RTT, concurrency {concurrency}",
            RTT.as_millis()
        );
        rows.push(
            Row::new("11 latency", &figure, ours, "syncs/s")
                .against("concurrency ÷ RTT", bound)
                .target("≥ 0.8×"),
        );
        rows.push(
            Row::new("11 latency", &figure, ours, "syncs/s")
                .against(
                    "concurrency ÷ RTT or the upstream core's bound, the lower",
                    bound.min(upstream_bound),
                )
                .target("≥ 0.8×"),
        );
        // a git:// listing waits for the TCP handshake, then for its request's answer
        rows.push(
            Row::new("11 latency", &figure, ours, "syncs/s")
                .against("concurrency ÷ 2 RTT (git://'s floor)", bound / 2.0),
        );
        rows.push(
            Row::new("11 latency", &figure, ours, "syncs/s")
                .against("git fetch v0 loop, same parallelism", cli),
        );
    }
    let _ = stop_proxy.send(());
    drop(pinned);
    Ok(())
}
