//! Benchmark 6: a `stasis-worker` process's resident memory idle and while it runs many
//! syncs at once (imports of the medium repository through a throttled link, so they
//! overlap).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::GitDaemon;
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;

use crate::fixture::Medium;
use crate::report::Row;
use crate::{sibling_binary, Scale};

pub(crate) fn rss_kib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("value")?
        .parse::<f64>()?)
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut env = TestEnv::new().await;
    env.cfg.sync.max_per_host = 0;
    let n = scale.memory_syncs;
    let served = env.dir.path().join("served");
    let medium = Medium::create(served.join("medium"), scale.commits, scale.blob_bytes);
    let daemon = GitDaemon::start(&served);
    // each import takes a couple of seconds, so all of them run at once
    let rate = (medium.size_bytes() as usize / 2).max(100_000);
    let proxy = ThrottledProxy::start(daemon.port, rate).await;
    let (owner, _) = env.user("bench", false).await;
    let mut repos = Vec::new();
    for i in 0..n {
        repos.push(
            env.mirror(&owner, &format!("m{i}"), &proxy.url("medium"))
                .await,
        );
    }

    let mut worker = std::process::Command::new(sibling_binary("stasis-worker")?)
        .envs(env.env_vars())
        .env("STASIS_WORKER_CONCURRENCY", n.to_string())
        .env("STASIS_SYNC_MAX_PER_HOST", "0")
        .env("STASIS_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = worker.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid, "VmRSS:")? / 1024.0;

    let mut jobs = Vec::new();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Import).await);
    }
    let mut peak_running = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (running, done): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE state IN ('done', 'failed', 'dead'))
             FROM sync_jobs",
        )
        .fetch_one(&env.pool)
        .await?;
        peak_running = peak_running.max(running as usize);
        if done as usize == n {
            break;
        }
        ensure!(Instant::now() < deadline, "syncs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = rss_kib(pid, "VmHWM:")? / 1024.0;
    worker.kill().ok();
    worker.wait().ok();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state <> 'done'")
        .fetch_one(&env.pool)
        .await?;
    ensure!(failed == 0, "{failed} imports did not succeed");

    rows.push(Row::new("6 memory", "worker RSS idle", idle, "MiB"));
    rows.push(
        Row::new(
            "6 memory",
            &format!("worker peak RSS, {n} imports ({peak_running} at once)"),
            peak,
            "MiB",
        )
        .against("idle", idle),
    );
    rows.push(Row::new(
        "6 memory",
        "per concurrent sync",
        (peak - idle) / peak_running.max(1) as f64,
        "MiB",
    ));
    Ok(())
}
