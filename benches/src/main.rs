//! `stasis-bench`: the sync pipeline's speed and memory, each beside a baseline measured
//! in the same run (git CLI, bare libgit2, raw Redis). `--quick` is CI's small version
//! that keeps every benchmark working; the full run's table goes in BENCHMARKS.md.

mod api;
mod cpu;
mod fixture;
mod fleet;
mod git;
mod history;
mod history_plans;
mod hostile;
mod import;
mod import_real;
mod manifest;
mod memory;
mod pin;
mod queue;
mod reclaim;
mod report;
mod reuse;
mod scheduler;
mod storages;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Parser;

#[derive(Parser)]
#[command(name = "stasis-bench", version)]
struct Args {
    /// Small sizes, for CI: checks that each benchmark runs, not how fast.
    #[arg(long)]
    quick: bool,
    /// The no-op benchmark's parallelism (how many syncs, listings and fetches at once).
    #[arg(long, value_delimiter = ',', default_values_t = [2, 8])]
    parallelism: Vec<usize>,
    /// Bare repositories the import benchmark also imports, each beside `git clone
    /// --mirror` (default: its generated many-refs repository).
    #[arg(long = "import-repo")]
    import_repos: Vec<PathBuf>,
    /// The fleet benchmark's mirrors (its default: 50,000; 2,000 with --quick).
    #[arg(long)]
    fleet_mirrors: Option<usize>,
    /// The fleet benchmark's interval in seconds (its default: 180, which makes 50,000
    /// mirrors the checks of 1,000,000 at 1 h; 20 with --quick).
    #[arg(long)]
    fleet_interval: Option<u64>,
    /// The fleet benchmark's measured intervals after its two warm-up ones (default 3; 1 with
    /// --quick).
    #[arg(long)]
    fleet_intervals: Option<u32>,
    /// The fleet benchmark's worker processes, and the syncs each runs at once.
    #[arg(long, default_value_t = 1)]
    fleet_workers: usize,
    #[arg(long, default_value_t = 32)]
    fleet_concurrency: usize,
    /// Benchmarks to run (noop, fetch, queue, scheduler, api, memory, hostile, history,
    /// import, latency, manifest, reclaim, storages, reuse, fleet; git is noop and
    /// fetch); all when none is given.
    only: Vec<String>,
}

pub struct Scale {
    pub mirrors: usize,
    pub commits: u32,
    pub blob_bytes: usize,
    pub rounds: usize,
    pub queue_jobs: usize,
    pub due_mirrors: usize,
    pub api_duration: Duration,
    pub memory_syncs: usize,
    /// Run rows of the history benchmark's large size (beside 10,000).
    pub history_runs: i64,
    /// The import benchmark's long history, and its many-refs repository's refs.
    pub import_commits: usize,
    pub import_refs: usize,
    /// The latency benchmark's mirrors, and the worker concurrencies it runs them at.
    pub latency_mirrors: usize,
    pub latency_concurrency: Vec<usize>,
    /// Mirrors of one manifest host in the manifest benchmark.
    pub manifest_mirrors: usize,
    /// The Redis footprint benchmark's mirrors, and its sync cycles of all of them.
    pub reclaim_mirrors: usize,
    pub reclaim_cycles: usize,
    /// The storages benchmark: due mirrors of its tick, mirrors of its no-op round,
    /// mirrors it moves.
    pub storage_due_mirrors: usize,
    pub storage_mirrors: usize,
    pub storage_moves: usize,
    pub fleet: fleet::FleetScale,
    pub import_repos: Vec<PathBuf>,
    /// Up-to-date mirrors the reuse benchmark checks in each mode of each round.
    pub reuse_mirrors: usize,
    pub parallelism: Vec<usize>,
}

impl Scale {
    fn new(quick: bool, parallelism: Vec<usize>) -> Self {
        if quick {
            Self {
                mirrors: 20,
                commits: 20,
                blob_bytes: 200_000,
                rounds: 1,
                queue_jobs: 2_000,
                due_mirrors: 5_000,
                api_duration: Duration::from_secs(1),
                memory_syncs: 8,
                history_runs: 200_000,
                import_commits: 400,
                import_refs: 300,
                latency_mirrors: 40,
                latency_concurrency: vec![4, 16],
                manifest_mirrors: 20,
                reclaim_mirrors: 200,
                reclaim_cycles: 5,
                storage_due_mirrors: 4_000,
                storage_mirrors: 40,
                storage_moves: 20,
                fleet: fleet::FleetScale {
                    mirrors: 2_000,
                    interval: Duration::from_secs(20),
                    intervals: 1,
                    changing: 0.01,
                    workers: 1,
                    concurrency: 32,
                },
                import_repos: Vec::new(),
                reuse_mirrors: 40,
                parallelism,
            }
        } else {
            Self {
                mirrors: 1_000,
                commits: 300,
                blob_bytes: 8_000_000,
                rounds: 5,
                queue_jobs: 20_000,
                due_mirrors: 1_000_000,
                api_duration: Duration::from_secs(10),
                memory_syncs: 64,
                history_runs: 10_000_000,
                import_commits: 40_000,
                import_refs: 3_000,
                latency_mirrors: 2_000,
                latency_concurrency: vec![4, 16, 64, 256],
                manifest_mirrors: 1_000,
                reclaim_mirrors: 5_000,
                reclaim_cycles: 24,
                storage_due_mirrors: 100_000,
                storage_mirrors: 1_000,
                storage_moves: 200,
                fleet: fleet::FleetScale {
                    mirrors: 50_000,
                    interval: Duration::from_secs(180),
                    intervals: 3,
                    changing: 0.01,
                    workers: 1,
                    concurrency: 32,
                },
                import_repos: Vec::new(),
                reuse_mirrors: 200,
                parallelism,
            }
        }
    }
}

/// Another binary of the workspace, built beside this one (`cargo build --bins`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("binary directory")?.join(name);
    ensure!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (scripts/bench.sh does)",
        path.display()
    );
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scale = Scale::new(args.quick, args.parallelism);
    let f = &mut scale.fleet;
    f.mirrors = args.fleet_mirrors.unwrap_or(f.mirrors);
    f.interval = args.fleet_interval.map_or(f.interval, Duration::from_secs);
    f.intervals = args.fleet_intervals.unwrap_or(f.intervals);
    f.workers = args.fleet_workers;
    f.concurrency = args.fleet_concurrency;
    scale.import_repos = args.import_repos;
    let wanted = |name: &str| {
        args.only.is_empty()
            || args
                .only
                .iter()
                .any(|o| o == name || (o == "git" && matches!(name, "noop" | "fetch")))
    };
    // the https:// upstream's CA: OpenSSL reads SSL_CERT_FILE once, when this process
    // builds its first TLS context, which an earlier benchmark may do
    let ca = wanted("reuse").then(|| {
        let ca = stasis_testkit::tls::TestCa::new("Stasis benchmark upstreams");
        stasis_testkit::https::trust(&ca);
        ca
    });
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    // one failing benchmark still lets the others report
    for name in [
        "noop",
        "fetch",
        "queue",
        "scheduler",
        "api",
        "memory",
        "hostile",
        "history",
        "import",
        "latency",
        "manifest",
        "reclaim",
        "storages",
        "fleet",
        "reuse",
    ] {
        if !wanted(name) {
            continue;
        }
        println!("running {name}");
        let result = match name {
            "noop" => git::run_noop(&scale, &mut rows).await,
            "fetch" => git::run_fetch(&scale, &mut rows).await,
            "queue" => queue::run(&scale, &mut rows).await,
            "scheduler" => scheduler::run(&scale, &mut rows).await,
            "api" => api::run(&scale, &mut rows).await,
            "memory" => memory::run(&scale, &mut rows).await,
            "history" => history::run(&scale, &mut rows).await,
            "import" => import::run(&scale, &mut rows).await,
            "latency" => git::run_latency(&scale, &mut rows).await,
            "manifest" => manifest::run(&scale, &mut rows).await,
            "reclaim" => reclaim::run(&scale, &mut rows).await,
            "storages" => storages::run(&scale, &mut rows).await,
            "fleet" => fleet::run(&scale, &mut rows).await,
            "reuse" => reuse::run(&scale, ca.as_ref().expect("made above"), &mut rows).await,
            _ => hostile::run(&scale, &mut rows).await,
        };
        if let Err(e) = result {
            eprintln!("{name} benchmark failed: {e:#}");
            failed.push(name);
        }
    }
    report::print(&rows);
    ensure!(
        failed.is_empty(),
        "benchmarks failed: {}",
        failed.join(", ")
    );
    Ok(())
}
