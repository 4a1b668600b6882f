//! The fleet's steady state, end to end: N mirrors of one simulated upstream (listings
//! answered from memory, real packs for the repositories that changed), the whole stack
//! on this box (scheduler, workers, API idle, Postgres, Redis), every mirror checked
//! every interval (adaptive stretching off), a fraction of the upstreams changing each
//! interval. The interval is scaled: N mirrors at interval I make the checks a second of
//! N × 3600 / I mirrors at 1 h, which is the fleet the figures stand for.
//!
//! After two warm-up intervals it measures whole intervals and prints: checks a second
//! sustained; freshness (lag from an upstream change to the pack that carries it reaching
//! the mirror, p50/p99/max; mirrors overdue by more than an interval); CPU per 1,000
//! checks of each process group (the upstream apart); Postgres table and WAL bytes per
//! mirror-day; Redis memory per mirror; the workers' RSS.

mod measure;
mod populate;
mod stack;

use std::time::Duration;

use anyhow::ensure;
use rand::Rng;
use stasis_testkit::fleet::{Fleet, FleetUpstream};
use stasis_testkit::TestEnv;

use crate::report::Row;
use crate::Scale;
use measure::{Snapshot, Window};
use stack::{Shape, Stack};

/// The chain every simulated repository walks along: more changes than any repository
/// gets in a run.
const GENERATIONS: u8 = 200;

pub struct FleetScale {
    pub mirrors: usize,
    pub interval: Duration,
    /// Measured intervals after the two warm-up ones.
    pub intervals: u32,
    /// Fraction of the upstreams that change each interval.
    pub changing: f64,
    pub workers: usize,
    pub concurrency: usize,
}

impl FleetScale {
    /// The fleet at 1 h intervals this run stands for.
    pub fn hourly_equivalent(&self) -> f64 {
        self.mirrors as f64 * 3600.0 / self.interval.as_secs_f64()
    }
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let f = &scale.fleet;
    let env = TestEnv::new().await;
    let upstream = FleetUpstream::start(&env.dir.path().join("upstream"), f.mirrors, GENERATIONS);
    let first = populate::rows(&env, &upstream, f.mirrors).await?;
    // the product's 30 s tick against its 1 h default interval, scaled as the interval is
    let tick = Duration::from_secs(30)
        .mul_f64(f.interval.as_secs_f64() / 3600.0)
        .max(Duration::from_millis(200));
    let mut stack = Stack::start(
        &env,
        &Shape {
            workers: f.workers,
            concurrency: f.concurrency,
            interval: f.interval,
            tick,
        },
    )?;
    populate::import_first(&env, first).await?;
    populate::replicate(&env, f.mirrors, f.interval).await?;
    println!(
        "fleet: {} mirrors every {:.0} s ({:.0} mirrors at 1 h), {:.1}% changing an interval, \
         {} worker(s) × {} syncs at once, scheduler tick {} ms",
        f.mirrors,
        f.interval.as_secs_f64(),
        f.hourly_equivalent(),
        f.changing * 100.0,
        f.workers,
        f.concurrency,
        tick.as_millis()
    );
    let changes_from = upstream.fleet.now_ms();
    let changer = tokio::spawn(change(upstream.fleet.clone(), f.changing, f.interval));
    // two intervals: the first check of each mirror opens its run, the second folds into
    // it and keeps its job; from the third on, a check is what it is at steady state
    tokio::time::sleep(2 * f.interval).await;
    stack.check_running(env.dir.path())?;
    let before = Snapshot::take(&env, &stack, &upstream.fleet).await?;
    upstream.fleet.open_window();
    for _ in 0..f.intervals {
        tokio::time::sleep(f.interval).await;
        stack.check_running(env.dir.path())?;
    }
    let after = Snapshot::take(&env, &stack, &upstream.fleet).await?;
    changer.abort();
    let window = Window::new(
        &env,
        &stack,
        &upstream.fleet,
        f,
        changes_from,
        before,
        after,
    )
    .await?;
    drop(stack);
    window.print(f);
    window.check_mirrors(&env, &upstream.fleet)?;
    window.rows(f, rows);
    ensure!(
        window.failed_runs == 0,
        "{} runs failed",
        window.failed_runs
    );
    Ok(())
}

/// Changes `changing` of the upstreams an interval, at random moments, for ever.
async fn change(fleet: std::sync::Arc<Fleet>, changing: f64, interval: Duration) {
    let step = Duration::from_millis(100);
    let per_step = fleet.len() as f64 * changing * step.as_secs_f64() / interval.as_secs_f64();
    let mut owed = 0.0;
    let mut ticker = tokio::time::interval(step);
    loop {
        ticker.tick().await;
        owed += per_step;
        while owed >= 1.0 {
            owed -= 1.0;
            let repo = rand::rng().random_range(0..fleet.len());
            fleet.change(repo);
        }
    }
}
