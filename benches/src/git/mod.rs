//! Benchmarks 1 and 2: the no-op sync of many up-to-date mirrors end to end against a
//! `git fetch` loop and a bare libgit2 ref-listing loop ([`noop`]); the incremental
//! fetch and the initial clone against bare libgit2 and the git CLI, over git:// and
//! smart HTTP ([`fetch`]). What the pipeline is compared with is in [`baselines`];
//! the upstream, environment and timing both share are here.

mod baselines;
mod fetch;
mod latency;
pub(crate) mod noop;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::GitDaemon;
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::fixture::{HttpBackend, Medium};
use crate::Scale;

pub use fetch::run_fetch;
pub use latency::run_latency;
pub(crate) use latency::{proxy_thread, RTT};
pub use noop::run_noop;

const WAIT: Duration = Duration::from_secs(600);

/// The upstream's addresses: the no-op benchmark spreads its mirrors, listings and
/// fetches over them, so 8 connections at once fit `git daemon`'s accept queues (5 each).
const DAEMON_HOSTS: [&str; 4] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// A worker of this process with `concurrency` slots.
fn start_worker(env: &TestEnv, concurrency: usize) -> InProcessWorker {
    let mut cfg = env.cfg.clone();
    cfg.worker.concurrency = concurrency;
    InProcessWorker::start(cfg, env.pool.clone(), env.redis.clone())
}

/// Runs one job through the pipeline and returns its run's span in seconds: the sync's
/// own work, from its permit to the end of the fetch (the end record comes after). Returns
/// once the mirror's lock is free, its housekeeping done too.
async fn sync_one(env: &TestEnv, repo: Uuid, reason: SyncReason) -> anyhow::Result<f64> {
    let job = env.enqueue(repo, reason).await;
    let finished = env.finished(job, WAIT).await;
    ensure!(
        finished.state == JobState::Done,
        "sync failed: {:?}",
        finished.last_error
    );
    env.released(repo, WAIT).await;
    let run = env.runs(job).await.pop().context("run recorded")?;
    let took = run.finished_at.context("finished")? - run.started_at;
    Ok(took.num_microseconds().unwrap_or(0) as f64 / 1e6)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

fn sh(script: &str) -> anyhow::Result<()> {
    let status = Command::new("sh").arg("-c").arg(script).status()?;
    ensure!(status.success(), "failed: {script}");
    Ok(())
}

/// What both benchmarks start from: the medium upstream served over git:// and smart
/// HTTP, and a worker-less environment whose user owns the mirrors.
struct Bench {
    env: TestEnv,
    medium: Medium,
    // kept alive: they serve the upstream
    daemon: GitDaemon,
    http: HttpBackend,
    url: String,
    owner: stasis_shared::db::users::User,
}

async fn bench(scale: &Scale) -> Bench {
    let mut env = TestEnv::new().await;
    // one upstream host serves every mirror here: the per-host cap would serialise them
    env.cfg.sync.max_per_host = 0;
    env.cfg.queue.max_backlog = 100_000;
    // an idle consumer polls Redis this often (200 ms in production, where syncs wait
    // for their schedule anyway)
    env.cfg.queue.poll_interval = Duration::from_millis(10);
    let served = env.dir.path().join("served");
    let medium = Medium::create(served.join("medium"), scale.commits, scale.blob_bytes);
    // hundreds of syncs at once in the latency benchmark: no cap of 32 connections
    let daemon = GitDaemon::start_with(&served, &DAEMON_HOSTS, &["--max-connections=0"]);
    let http = HttpBackend::start(&served);
    let url = daemon.url("medium");
    println!(
        "upstream: {} commits, {:.1} MB; {} mirrors",
        scale.commits,
        medium.size_bytes() as f64 / 1e6,
        scale.mirrors
    );
    let (owner, _) = env.user("bench", false).await;
    Bench {
        env,
        medium,
        daemon,
        http,
        url,
        owner,
    }
}

/// [`bench`] with the first mirror, `m0`, imported through a worker: what the no-op
/// benchmarks copy into many up-to-date mirrors.
async fn bench_with_m0(scale: &Scale) -> anyhow::Result<(Bench, Uuid)> {
    let bench = bench(scale).await;
    let first = bench.env.mirror(&bench.owner, "m0", &bench.url).await;
    let worker = start_worker(&bench.env, 1);
    sync_one(&bench.env, first, SyncReason::Import).await?;
    worker.stop().await;
    Ok((bench, first))
}
