//! Benchmark 7: a `stasis-worker` process's peak memory while hostile upstreams try to
//! exhaust it: endless ref advertisements, garbage after the advertisement, junk packs
//! and silent sockets, `worker.concurrency` syncs at once, default limits.

use std::time::{Duration, Instant};

use anyhow::ensure;
use stasis_shared::domain::SyncReason;
use stasis_testkit::hostile::{HostileGitServer, Hostility};
use stasis_testkit::TestEnv;

use crate::memory::rss_kib;
use crate::report::Row;
use crate::{sibling_binary, Scale};

const CONCURRENCY: usize = 4;
/// What the issue allows a worker at concurrency 4 under hostile upstreams.
const TARGET_MIB: f64 = 256.0;

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let kinds = [
        Hostility::EndlessAdvertisement,
        Hostility::EndlessAdvertisement,
        Hostility::GarbageAfterAdvertisement,
        Hostility::JunkPack,
        Hostility::Silent,
    ];
    let servers: Vec<_> = kinds.iter().map(|k| HostileGitServer::start(*k)).collect();
    let (owner, _) = env.user("bench", false).await;
    let n = scale.memory_syncs.max(CONCURRENCY * 2);
    let mut repos = Vec::new();
    for i in 0..n {
        let server = &servers[i % servers.len()];
        repos.push(
            env.mirror(&owner, &format!("h{i}"), &server.url("x.git"))
                .await,
        );
    }
    let mut worker = std::process::Command::new(sibling_binary("stasis-worker")?)
        .envs(env.env_vars())
        .env("STASIS_WORKER_CONCURRENCY", CONCURRENCY.to_string())
        .env("STASIS_SYNC_MAX_PER_HOST", "0")
        .env("STASIS_SYNC_MAX_ATTEMPTS", "1")
        .env("STASIS_SYNC_TIMEOUT", "5s")
        .env("STASIS_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = worker.id();
    let mut jobs = Vec::new();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Import).await);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_jobs WHERE state NOT IN ('done', 'failed', 'dead')",
        )
        .fetch_one(&env.pool)
        .await?;
        if open == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "hostile syncs did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = rss_kib(pid, "VmHWM:")? / 1024.0;
    worker.kill().ok();
    worker.wait().ok();
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state = 'done'")
        .fetch_one(&env.pool)
        .await?;
    ensure!(succeeded == 0, "{succeeded} hostile syncs succeeded");
    let sent: u64 = servers.iter().map(|s| s.bytes_sent()).sum();
    rows.push(
        Row::new(
            "7 hostile",
            &format!("worker peak RSS, {n} hostile syncs, {CONCURRENCY} at once"),
            peak,
            "MiB",
        )
        .target(&format!("< {TARGET_MIB} MiB")),
    );
    rows.push(Row::new(
        "7 hostile",
        "bytes the hostile servers got sent",
        sent as f64 / (1 << 20) as f64,
        "MiB",
    ));
    ensure!(
        peak < TARGET_MIB,
        "peak RSS {peak:.0} MiB under hostile upstreams"
    );
    Ok(())
}
