//! Benchmark `reuse`: no-op checks of up-to-date mirrors of one https:// upstream, with
//! connections kept between checks (`worker.reuse_connections`) and with a client, so a
//! TCP and a TLS handshake, per check. Each check is what a no-op sync's fetch step does
//! (`fetch_mirror` on an up-to-date mirror), one at a time, in this process; the
//! upstream (`git http-backend` behind a small TLS server) is another process, pinned
//! to a CPU of its own, so CPU of this process is the client's alone. Measured on
//! loopback, then through a proxy that adds a WAN's round trip (the latency
//! benchmark's), where the handshakes' round trips are what reuse saves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::git::selection::RefSelection;
use stasis_testkit::tls::TestCa;
use stasis_worker::git::fetch::{fetch_mirror, FetchReport, FetchRequest, TransferProgress};
use stasis_worker::git::gate::WriteGate;
use stasis_worker::git::transport::{configure_reuse, NetworkPolicy, Reuse};

use crate::cpu::Cpu;
use crate::fixture::{copy_dir, HttpBackend, Medium};
use crate::git::{proxy_thread, RTT};
use crate::pin::Pinning;
use crate::report::Row;
use crate::Scale;

/// What one mode spent on its checks.
#[derive(Default)]
struct Spent {
    cpu: Cpu,
    secs: f64,
    checks: usize,
}

impl Spent {
    /// CPU of this process per check, in milliseconds.
    fn cpu_ms(&self) -> f64 {
        self.cpu.per_op(self.checks).bench
    }

    /// Wall time per check, in milliseconds.
    fn wall_ms(&self) -> f64 {
        self.secs * 1e3 / self.checks.max(1) as f64
    }
}

/// `ca`: the CA this process trusts ([`stasis_testkit::https::trust`]).
pub async fn run(scale: &Scale, ca: &TestCa, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let served = dir.path().join("served");
    // the fixture's refs (branches, tags), little content: a listing is all a check reads
    let _medium = Medium::create(served.join("medium"), scale.commits, 10_000);
    let cert = ca.issue("bench-upstream", &["127.0.0.1"]);
    let upstream = HttpBackend::start_tls(&served, &cert);
    let url = format!("https://127.0.0.1:{}/medium", upstream.port);
    let n = scale.reuse_mirrors;
    let mirrors = mirrors(dir.path(), &url, n).await?;
    let pinned = Pinning::upstream_apart(upstream.pid())?;

    println!(
        "no-op checks of {n} mirrors over https on loopback, one at a time, {} rounds",
        scale.rounds
    );
    let (on, off) = modes(&mirrors, &url, scale.rounds).await?;
    report("on loopback", &on, &off, true);
    rows.push(
        Row::new(
            "reuse",
            "CPU per no-op https check, reuse on",
            on.cpu_ms(),
            "ms",
        )
        .against("reuse off", off.cpu_ms())
        .target("≤ 0.5×"),
    );
    rows.push(
        Row::new(
            "reuse",
            "wall time per no-op https check, reuse on, loopback",
            on.wall_ms(),
            "ms",
        )
        .against("reuse off", off.wall_ms())
        .target("≤ 0.5×"),
    );

    let upstream_addr: SocketAddr = format!("127.0.0.1:{}", upstream.port).parse()?;
    let (proxy, proxy_tid, stop_proxy) = proxy_thread(vec![upstream_addr])?;
    if let Some(pinned) = &pinned {
        pinned.to_upstream(proxy_tid)?;
    }
    let far = format!("https://127.0.0.1:{}/medium", proxy.port());
    let few = &mirrors[..n.div_ceil(4)];
    println!(
        "no-op checks of {} mirrors over https, {} ms more per round trip",
        few.len(),
        RTT.as_millis()
    );
    let (on, off) = modes(few, &far, scale.rounds).await?;
    let _ = stop_proxy.send(());
    report(&format!("{} ms RTT", RTT.as_millis()), &on, &off, false);
    rows.push(
        Row::new(
            "reuse",
            &format!(
                "wall time per no-op https check, reuse on, {} ms RTT",
                RTT.as_millis()
            ),
            on.wall_ms(),
            "ms",
        )
        .against("reuse off", off.wall_ms())
        .target("≤ 0.5×"),
    );
    configure_reuse(Reuse::default());
    Ok(())
}

/// The figures of a leg; CPU only where this process holds the client alone (the
/// proxy's thread is this process's too).
fn report(leg: &str, on: &Spent, off: &Spent, cpu: bool) {
    for (mode, spent) in [("on", on), ("off", off)] {
        let used = format!(", {:.3} ms CPU of this process", spent.cpu_ms());
        println!(
            "{leg}, reuse {mode}, per check: {:.3} ms{}",
            spent.wall_ms(),
            if cpu { used.as_str() } else { "" }
        );
    }
}

/// `rounds` of a check of every mirror with reuse on and one with it off, each mode
/// first in turn so that the host's drift lands on both. Returns (on, off).
async fn modes(mirrors: &[PathBuf], url: &str, rounds: usize) -> anyhow::Result<(Spent, Spent)> {
    let (mut on, mut off) = (Spent::default(), Spent::default());
    for round in 0..rounds.max(1) {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for reusing in order {
            let spent = if reusing { &mut on } else { &mut off };
            checks(mirrors, url, reusing, spent).await?;
        }
    }
    Ok((on, off))
}

/// `n` up-to-date mirrors of `url`: the first fetched, the others copies of it.
async fn mirrors(dir: &Path, url: &str, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let first = dir.join("mirrors").join("m0.git");
    let report = blocking_check(first.clone(), url.to_owned()).await?;
    ensure!(!report.unchanged, "the first mirror was fetched");
    let mut all = vec![first.clone()];
    for i in 1..n {
        let mirror = dir.join("mirrors").join(format!("m{i}.git"));
        copy_dir(&first, &mirror);
        all.push(mirror);
    }
    Ok(all)
}

/// A no-op check of every mirror, one after the other, with reuse on or off.
async fn checks(
    mirrors: &[PathBuf],
    url: &str,
    reusing: bool,
    spent: &mut Spent,
) -> anyhow::Result<()> {
    configure_reuse(Reuse {
        enabled: reusing,
        ..Reuse::default()
    });
    let (mirrors, url) = (mirrors.to_vec(), url.to_owned());
    let count = mirrors.len();
    let before = Cpu::now();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for mirror in &mirrors {
            let report = check(mirror, &url)?;
            ensure!(report.unchanged, "{} was up to date", mirror.display());
        }
        Ok(())
    })
    .await
    .context("check thread")??;
    spent.secs += started.elapsed().as_secs_f64();
    spent.cpu.add_span(&before, &Cpu::now());
    spent.checks += count;
    Ok(())
}

async fn blocking_check(mirror: PathBuf, url: String) -> anyhow::Result<FetchReport> {
    tokio::task::spawn_blocking(move || check(&mirror, &url))
        .await
        .context("check thread")?
}

/// What a sync's fetch step does, on this thread.
fn check(mirror: &Path, url: &str) -> anyhow::Result<FetchReport> {
    let network = NetworkPolicy {
        allow_local_network: true,
        ..NetworkPolicy::from_config(&stasis_shared::Config::default())
    };
    let gate = WriteGate::default();
    gate.decide(true);
    fetch_mirror(&FetchRequest {
        path: mirror,
        url,
        deadline: Instant::now() + Duration::from_secs(60),
        stop: &Arc::default(),
        network: &network,
        selection: &RefSelection::default(),
        gate: &gate,
        progress: &TransferProgress::default(),
        ssh: &Default::default(),
    })
    .map_err(|e| anyhow::anyhow!("{url}: {}", e.message))
}
