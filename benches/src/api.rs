//! Benchmark 5: the API under load from this process against `stasis-api` running as
//! its own process: `GET …/mirror/status` closed-loop throughput and latency, and
//! `POST …/sync` latency at a fixed 1,000 requests/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
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
        // one client measures the API's latency: per-client budgets would measure 429s
        .env("STASIS_RATELIMIT_ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    wait_for_port(port, "stasis-api");
    let base = format!("http://127.0.0.1:{port}/api/v1/repos/bench/hot");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build()?;
    let duration = scale.api_duration;

    // status: closed loop, as fast as the server answers
    let status_url = format!("{base}/mirror/status");
    let (generator, rate, p50, p99) = match wrk(&status_url, duration)? {
        Some((rate, p50, p99)) => ("wrk", rate, p50, p99),
        None => {
            let (rate, mut latencies) = reqwest_loop(&http, &status_url, duration).await?;
            let p50 = quantile(&mut latencies, 0.5);
            ("reqwest", rate, p50, quantile(&mut latencies, 0.99))
        }
    };
    rows.push(
        Row::new(
            "5 api",
            &format!("GET mirror/status throughput ({generator}, {CONNECTIONS} connections)"),
            rate,
            "req/s",
        )
        .target("≥ 10,000 req/s"),
    );
    rows.push(Row::new("5 api", "GET mirror/status p50", p50, "ms"));
    rows.push(Row::new("5 api", "GET mirror/status p99", p99, "ms"));

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
            let status = resp.status().as_u16();
            // 503 is the API shedding load (`api.max_concurrent_requests`): counted and
            // reported, not a failure of the benchmark; anything else is
            ensure!(matches!(status, 202 | 503), "sync answered {status}");
            resp.bytes().await?;
            Ok::<_, anyhow::Error>((status, t.elapsed().as_secs_f64() * 1e3))
        }));
    }
    let (mut sync, mut shed) = (Vec::new(), 0usize);
    for t in tasks {
        match t.await?? {
            (202, ms) => sync.push(ms),
            _ => shed += 1,
        }
    }
    ensure!(!sync.is_empty(), "every sync request was shed");
    let offered = (sync.len() + shed) as f64 / duration.as_secs_f64();
    rows.push(
        Row::new(
            "5 api",
            &format!("POST sync shed (503) at {offered:.0} req/s"),
            shed as f64,
            "requests",
        )
        .target("0"),
    );
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

/// `wrk` (C, epoll), when installed, as the load generator: it needs a fraction of the
/// CPU the reqwest loop does, and the generator shares the two cores with the API and
/// Postgres. Returns req/s and the p50 and p99 latencies in ms; `None` without `wrk`.
fn wrk(url: &str, duration: Duration) -> anyhow::Result<Option<(f64, f64, f64)>> {
    let out = match std::process::Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), "--latency"])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg(url)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "status requests failed under wrk: {text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("wrk printed no `{prefix}`: {text}"))
    };
    let rate: f64 = field("Requests/sec:")?.parse()?;
    Ok(Some((rate, millis(field("50%")?)?, millis(field("99%")?)?)))
}

/// A wrk latency such as `812.00us`, `1.23ms` or `1.01s`, in ms.
fn millis(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        anyhow::bail!("unexpected wrk latency {text:?}")
    };
    Ok(number.parse::<f64>()? * scale)
}

/// The fallback generator: `CONNECTIONS` closed loops of this process's reqwest client.
/// Returns req/s and every latency in ms.
async fn reqwest_loop(
    http: &reqwest::Client,
    url: &str,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let loops = (0..CONNECTIONS).map(|_| {
        let (http, url, latencies) = (http.clone(), url.to_owned(), latencies.clone());
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
    let latencies = std::mem::take(&mut *latencies.lock().await);
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}
