//! Benchmark 5: the API under load from this process against `stasis-api` running as
//! its own process: `GET …/mirror/status` closed-loop throughput and latency, and
//! `POST …/sync` latency at a fixed 1,000 requests/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use stasis_testkit::git::{free_port, wait_for_port};
use stasis_testkit::TestEnv;
use tokio::sync::Mutex;

use crate::report::{quantile, Row};
use crate::{sibling_binary, Scale};

const CONNECTIONS: usize = 32;

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let env = TestEnv::new().await;
    let (owner, token) = env.user("bench", false).await;
    env.mirror(&owner, "hot", "https://example.com/hot.git")
        .await;
    let port = free_port();
    let mut api = std::process::Command::new(sibling_binary("stasis-api")?)
        .envs(env.env_vars())
        .env("STASIS_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("STASIS_LOG_LEVEL", "warn")
        .env("STASIS_DATABASE_MAX_CONNECTIONS", "16")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    wait_for_port(port, "stasis-api");
    let base = format!("http://127.0.0.1:{port}/api/v1/repos/bench/hot");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build()?;
    let duration = scale.api_duration;

    // status: closed loop, as fast as the server answers
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let loops = (0..CONNECTIONS).map(|_| {
        let (http, url, latencies) = (
            http.clone(),
            format!("{base}/mirror/status"),
            latencies.clone(),
        );
        async move {
            let mut mine = Vec::new();
            while started.elapsed() < duration {
                let t = Instant::now();
                let resp = http.get(&url).send().await?;
                ensure!(resp.status() == 200, "status answered {}", resp.status());
                resp.bytes().await?;
                mine.push(t.elapsed().as_secs_f64() * 1e3);
            }
            latencies.lock().await.extend(mine);
            Ok(())
        }
    });
    for r in futures::future::join_all(loops).await {
        r?;
    }
    let mut status = std::mem::take(&mut *latencies.lock().await);
    let rate = status.len() as f64 / started.elapsed().as_secs_f64();
    rows.push(
        Row::new("5 api", "GET mirror/status throughput", rate, "req/s").target("≥ 10,000 req/s"),
    );
    rows.push(Row::new(
        "5 api",
        "GET mirror/status p50",
        quantile(&mut status, 0.5),
        "ms",
    ));
    rows.push(Row::new(
        "5 api",
        "GET mirror/status p99",
        quantile(&mut status, 0.99),
        "ms",
    ));

    // sync: open loop at 1,000 req/s (every request after the first finds the job queued)
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        ticker.tick().await;
        let (http, url, token) = (http.clone(), format!("{base}/sync"), token.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = http.post(&url).bearer_auth(&token).send().await?;
            ensure!(resp.status() == 202, "sync answered {}", resp.status());
            resp.bytes().await?;
            Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut sync = Vec::new();
    for t in tasks {
        sync.push(t.await??);
    }
    let offered = sync.len() as f64 / duration.as_secs_f64();
    rows.push(Row::new(
        "5 api",
        &format!("POST sync p50 at {offered:.0} req/s"),
        quantile(&mut sync, 0.5),
        "ms",
    ));
    rows.push(
        Row::new(
            "5 api",
            &format!("POST sync p99 at {offered:.0} req/s"),
            quantile(&mut sync, 0.99),
            "ms",
        )
        .target("< 10 ms"),
    );
    api.kill().ok();
    api.wait().ok();
    Ok(())
}
