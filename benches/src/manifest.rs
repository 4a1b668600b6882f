//! Benchmark 9: a scheduler round where nothing changed, for a fleet of mirrors of one
//! host that publishes a grokmirror manifest, beside grok-pull (grokmirror 2.0.12)
//! checking the same fleet from the same manifest, served by the same loopback server.
//! The manifest is written by grokmirror's own `grok-manifest`. Both are timed with the
//! manifest read whole (ours: a tick's first read; grok-pull: `--no-mtime-check`) and
//! answered `304 Not Modified` (every later tick; grok-pull's plain run).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_scheduler::due::enqueue_due;
use stasis_scheduler::manifest::Manifests;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{git, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::manifest::ManifestServer;
use stasis_testkit::TestEnv;

use crate::cpu::Cpu;
use crate::fixture::copy_dir;
use crate::report::Row;
use crate::Scale;

const BENCH: &str = "9 manifest";

/// A grokmirror program: on `PATH`, or in the Python tools' virtual environment.
fn grok(program: &str) -> anyhow::Result<std::path::PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .context("no cache directory")?;
    let venv = cache.join("stasis-mirror-sync/venv/bin").join(program);
    if venv.exists() {
        return Ok(venv);
    }
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()?;
    ensure!(
        found.status.success(),
        "{program} is missing: `source scripts/python-tools.sh && python_tools grokmirror==2.0.12`"
    );
    Ok(String::from_utf8_lossy(&found.stdout).trim().into())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn run_timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = cmd.output()?;
    let took = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = scale.manifest_mirrors;
    let samples = scale.rounds.max(3);
    let grok_manifest = grok("grok-manifest")?;
    let grok_pull = grok("grok-pull")?;
    let mut env = TestEnv::new().await;
    env.cfg.queue.max_backlog = n as u64 + 1;

    // the fleet: one repository with some history, copied n - 1 times
    let top = env.dir.path().join("top");
    let work = Upstream::create(env.dir.path().join("work"));
    for i in 0..20 {
        std::fs::write(work.path.join("file.txt"), format!("{i}\n"))?;
        git(&work.path, &["commit", "-qam", &format!("c{i}")]);
        if i % 5 == 4 {
            git(&work.path, &["tag", &format!("v{i}")]);
        }
    }
    git(
        &work.path,
        &[
            "clone",
            "-q",
            "--bare",
            ".",
            top.join("r0.git").to_str().unwrap(),
        ],
    );
    for i in 1..n {
        copy_dir(&top.join("r0.git"), &top.join(format!("r{i}.git")));
    }
    let manifest_file = env.dir.path().join("manifest.js.gz");
    let out = Command::new(&grok_manifest)
        .arg("-m")
        .arg(&manifest_file)
        .arg("-t")
        .arg(&top)
        .output()?;
    ensure!(
        out.status.success(),
        "grok-manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = ManifestServer::start();
    server.publish_gz(std::fs::read(&manifest_file)?);
    let git_http = GitHttpServer::start(&top);
    env.cfg
        .mirror
        .manifests
        .insert("127.0.0.1".into(), server.url());

    // the mirrors: the first synced by a real worker, which stores its fingerprint; the
    // others (identical upstreams) given the same state
    let (owner, _) = env.user("fleet", false).await;
    let first = env.mirror(&owner, "m0", &git_http.url("r0.git")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(first, SyncReason::Import).await;
    let job = env.finished(import, Duration::from_secs(120)).await;
    ensure!(
        job.state == JobState::Done,
        "import of m0: {:?}",
        job.last_error
    );
    worker.stop().await;
    let m0 = env.mirror_path("fleet", "m0");
    for i in 1..n {
        let name = format!("m{i}");
        env.mirror(&owner, &name, &git_http.url(&format!("r{i}.git")))
            .await;
        copy_dir(&m0, &env.mirror_path("fleet", &name));
    }
    sqlx::query(
        "UPDATE repositories r SET refs_fingerprint = m0.refs_fingerprint,
             last_synced_at = m0.last_synced_at
         FROM repositories m0 WHERE m0.id = $1 AND r.id <> m0.id",
    )
    .bind(first)
    .execute(&env.pool)
    .await?;
    sqlx::query("ANALYZE repositories")
        .execute(&env.pool)
        .await?;

    let mut manifests = Manifests::new(&env.cfg);
    let (mut whole, mut conditional) = (Vec::new(), Vec::new());
    for round in 0..=samples {
        sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second'")
            .execute(&env.pool)
            .await?;
        if round > 0 && round % 2 == 0 {
            // every other round the same content as a new version, read whole again;
            // the rounds between are answered 304
            server.publish_gz(std::fs::read(&manifest_file)?);
        }
        let started = Instant::now();
        let done = manifests.round(&env.cfg, &env.pool).await?;
        let tick = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs()).await?;
        let took = started.elapsed().as_secs_f64();
        ensure!(
            done.skipped as usize == n && tick.enqueued == 0,
            "round {round}: {} of {n} skipped, {} enqueued",
            done.skipped,
            tick.enqueued
        );
        let status = server.requests().last().map(|s| s.status);
        match status {
            Some(200) => whole.push(took),
            Some(304) => conditional.push(took),
            other => anyhow::bail!("manifest answered {other:?}"),
        }
    }
    ensure!(
        server.requests().len() == samples + 1,
        "one manifest request per round"
    );

    // grok-pull on a replica of the same fleet, its local manifest up to date
    let local = env.dir.path().join("grok-local");
    copy_dir(&top, &local);
    std::fs::copy(&manifest_file, local.join("manifest.js.gz"))?;
    let config = env.dir.path().join("grok-pull.conf");
    std::fs::write(
        &config,
        format!(
            "[core]\ntoplevel = {}\nmanifest = ${{toplevel}}/manifest.js.gz\nlog = {}\nloglevel = info\n\
             [remote]\nsite = {}\nmanifest = {}\n[pull]\npull_threads = 2\n",
            local.display(),
            env.dir.path().join("grok-pull.log").display(),
            git_http.url("").trim_end_matches('/'),
            server.url()
        ),
    )?;
    let pull = |nomtime: bool| {
        let mut cmd = Command::new(&grok_pull);
        cmd.arg("-c").arg(&config);
        if nomtime {
            cmd.arg("-n");
        }
        cmd
    };
    // the first run writes its fingerprint cache and remembers Last-Modified
    run_timed(&mut pull(true))?;
    let mut grok_whole = Vec::new();
    let mut grok_conditional = Vec::new();
    for _ in 0..samples {
        grok_whole.push(run_timed(&mut pull(true))?);
        grok_conditional.push(run_timed(&mut pull(false))?);
    }
    let requests = server.requests();
    ensure!(
        requests
            .iter()
            .rev()
            .take(2 * samples)
            .filter(|r| r.status == 304)
            .count()
            == samples,
        "grok-pull's plain runs were answered 304"
    );
    let log = std::fs::read_to_string(env.dir.path().join("grok-pull.log"))?;
    ensure!(
        log.contains(&format!(" manifest: {n} relevant entries")),
        "grok-pull did not read the manifest's {n} repositories:\n{log}"
    );

    // a fleet kept up to date: the manifest round plus the syncs it lets through, beside
    // grok-pull's own run, when no upstream changed and when a tenth did
    let side = Side {
        top: &top,
        local: &local,
        work: &work.path,
        grok_manifest: &grok_manifest,
        manifest_file: &manifest_file,
        server: &server,
    };
    for percent in [0, 10] {
        let (ours, theirs) =
            changed_round(&env, &mut manifests, &side, percent, &mut pull(false)).await?;
        let figure = format!("fleet of {n} kept up to date, {percent}% of upstreams changed");
        rows.push(
            Row::new(BENCH, &format!("{figure}: wall"), ours.secs * 1e3, "ms")
                .against("grok-pull", theirs.secs * 1e3),
        );
        rows.push(
            Row::new(
                BENCH,
                &format!("{figure}: CPU, this host"),
                ours.cpu * 1e3,
                "ms",
            )
            .against("grok-pull", theirs.cpu * 1e3),
        );
    }

    let listed = listing_round(&mut env, n).await?;

    let grok_whole_copy = grok_whole.clone();
    let ms = |s: f64| s * 1000.0;
    rows.push(
        Row::new(
            BENCH,
            &format!("round with nothing changed, {n} mirrors, manifest read whole"),
            ms(median(whole)),
            "ms",
        )
        .against("grok-pull -n", ms(median(grok_whole))),
    );
    rows.push(
        Row::new(
            BENCH,
            &format!("round with nothing changed, {n} mirrors, manifest 304"),
            ms(median(conditional)),
            "ms",
        )
        .against("grok-pull (304)", ms(median(grok_conditional))),
    );
    rows.push(
        Row::new(
            BENCH,
            &format!("the same round without a manifest: {n} no-op syncs (ref listings)"),
            ms(listed),
            "ms",
        )
        .against("grok-pull -n", ms(median(grok_whole_copy))),
    );
    Ok(())
}

/// The same round as without a manifest: every due mirror enqueued and synced by a
/// worker (at `worker.concurrency`), each sync one ref listing that finds nothing new.
/// From the tick to the last job done.
async fn listing_round(env: &mut TestEnv, n: usize) -> anyhow::Result<f64> {
    env.cfg.mirror.manifests.clear();
    sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second'")
        .execute(&env.pool)
        .await?;
    let before = crate::git::noop::unchanged_checks(&env.pool).await?;
    let worker = env.spawn_worker();
    let started = Instant::now();
    let tick = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs()).await?;
    ensure!(
        tick.enqueued as usize == n,
        "enqueued {} of {n}",
        tick.enqueued
    );
    env.drained(Duration::from_secs(300)).await;
    let took = started.elapsed().as_secs_f64();
    worker.stop().await;
    let unchanged = crate::git::noop::unchanged_checks(&env.pool).await? - before;
    if unchanged as usize != n {
        let runs: Vec<(Option<String>, Option<String>, bool, i32)> = sqlx::query_as(
            "SELECT outcome, error, unchanged, refs_updated FROM sync_runs ORDER BY id",
        )
        .fetch_all(&env.pool)
        .await?;
        anyhow::bail!("{unchanged} of {n} syncs found nothing new: {runs:?}");
    }
    Ok(took)
}

/// What a changed round needs of the fleet: the upstreams, the repository commits come
/// from, and how the manifest is written and served.
struct Side<'a> {
    top: &'a Path,
    /// grok-pull's replica of `top`.
    local: &'a Path,
    work: &'a Path,
    grok_manifest: &'a Path,
    manifest_file: &'a Path,
    server: &'a ManifestServer,
}

/// Wall time and CPU seconds of one side's round.
struct Spent {
    secs: f64,
    cpu: f64,
}

/// `percent` of the upstreams get a new commit and the manifest is written anew; then
/// our round (the manifest read, the changed mirrors enqueued and synced by a worker,
/// until the last is done) and grok-pull's run (the manifest read, the changed
/// repositories fetched). CPU is every process of this host (the upstream's
/// `git http-backend` runs here for both sides): `Cpu::total` over the span.
async fn changed_round(
    env: &TestEnv,
    manifests: &mut Manifests,
    side: &Side<'_>,
    percent: usize,
    grok_pull: &mut Command,
) -> anyhow::Result<(Spent, Spent)> {
    let n: usize = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM repositories")
        .fetch_one(&env.pool)
        .await? as usize;
    // every tenth upstream for 10%
    let step = 100 / percent.max(1);
    let mut changed: Vec<usize> = (0..n).filter(|i| percent > 0 && i % step == 0).collect();
    // grok-pull 2.0.12 never exits when it pulled a multiple of 100 repositories: every
    // 100th one empties its list of finished pulls (`update_manifest` pops them), and its
    // run-once exit waits for that list to be non-empty. One more keeps it finishing.
    if !changed.is_empty() && changed.len().is_multiple_of(100) {
        if let Some(extra) = (0..n).find(|i| i % step != 0) {
            changed.push(extra);
            println!(
                "{} upstreams changed instead of {}: grok-pull 2.0.12 hangs after a \
                 multiple of 100",
                changed.len(),
                changed.len() - 1
            );
        }
    }
    if !changed.is_empty() {
        git(
            side.work,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("{percent}% changed"),
            ],
        );
        for i in &changed {
            let target = side.top.join(format!("r{i}.git"));
            git(
                side.work,
                &["push", "-q", target.to_str().unwrap(), "HEAD:main"],
            );
        }
    }
    let out = Command::new(side.grok_manifest)
        .arg("-m")
        .arg(side.manifest_file)
        .arg("-t")
        .arg(side.top)
        .output()?;
    ensure!(
        out.status.success(),
        "grok-manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    side.server.publish_gz(std::fs::read(side.manifest_file)?);
    sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second'")
        .execute(&env.pool)
        .await?;

    let worker = env.spawn_worker();
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let done = manifests.round(&env.cfg, &env.pool).await?;
    let tick = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs()).await?;
    ensure!(
        tick.enqueued as usize == changed.len() && done.skipped as usize == n - changed.len(),
        "{percent}%: {} enqueued, {} skipped, {} changed",
        tick.enqueued,
        done.skipped,
        changed.len()
    );
    env.drained(Duration::from_secs(300)).await;
    let secs = started.elapsed().as_secs_f64();
    let our_cpu = settled(&cpu_before).await;
    let ours = Spent {
        secs,
        cpu: our_cpu.total(),
    };
    worker.stop().await;
    let moved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE outcome = 'success' AND NOT unchanged
         AND started_at > now() - make_interval(secs => $1)",
    )
    .bind(ours.secs + 1.0)
    .fetch_one(&env.pool)
    .await?;
    ensure!(
        moved as usize == changed.len(),
        "{moved} syncs moved refs, {} upstreams changed",
        changed.len()
    );
    if !changed.is_empty() {
        // where a changed mirror's time goes, by the runs' own clocks
        let (list, fetch, housekeeping, total): (f64, f64, f64, f64) = sqlx::query_as(
            "SELECT coalesce(avg(list_ms), 0)::float8, coalesce(avg(fetch_ms), 0)::float8,
                    coalesce(avg(housekeeping_ms), 0)::float8,
                    coalesce(avg(extract(epoch FROM finished_at - started_at) * 1000), 0)::float8
             FROM sync_runs WHERE outcome = 'success' AND NOT unchanged
             AND started_at > now() - make_interval(secs => $1)",
        )
        .bind(ours.secs + 1.0)
        .fetch_one(&env.pool)
        .await?;
        println!(
            "{percent}% changed, ours per changed mirror: {}; a run takes {total:.0} ms \
             (listing {list:.0}, fetch {fetch:.0}, housekeeping {housekeeping:.0})",
            our_cpu.per_op(changed.len())
        );
    }

    let cpu_before = Cpu::now();
    let secs = run_timed(grok_pull)?;
    let their_cpu = settled(&cpu_before).await;
    if !changed.is_empty() {
        println!(
            "{percent}% changed, grok-pull per changed mirror: {}",
            their_cpu.per_op(changed.len())
        );
    }
    let theirs = Spent {
        secs,
        cpu: their_cpu.total(),
    };
    let head = |dir: &Path| -> anyhow::Result<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(["rev-parse", "main"])
            .output()?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    for i in &changed {
        let name = format!("r{i}.git");
        ensure!(
            head(&side.local.join(&name))? == head(&side.top.join(&name))?,
            "grok-pull did not bring {name} up to date"
        );
    }
    Ok((ours, theirs))
}

/// CPU seconds every process here spent since `before`, read once the processes a
/// side started have been reaped.
async fn settled(before: &Cpu) -> Cpu {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut spent = Cpu::default();
    spent.add_span(before, &Cpu::now());
    spent
}
