//! Imports of real repositories (any bare repository on disk, `--import-repo PATH`),
//! beside `git clone --mirror` of the same upstream in the same run: wall time from the
//! request to the mirror's status turning `success`, and peak resident memory (a worker
//! process of its own for each import, with its anonymous share sampled; the clone's
//! largest process). The worker's run
//! record says where its time went (listing, fetch, the rest). The mirror's housekeeping
//! (its serving indexes) goes on after `success`, under its lock: the time until that
//! lock is released is reported beside, and the clone starts only then. Served by `git
//! daemon` on a CPU of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::GitDaemon;
use stasis_testkit::TestEnv;

use crate::memory::rss_kib;
use crate::pin::Pinning;
use crate::report::Row;
use crate::sibling_binary;

pub async fn run(paths: &[PathBuf], rows: &mut Vec<Row>) -> anyhow::Result<()> {
    for path in paths {
        let path = path
            .canonicalize()
            .with_context(|| format!("{}", path.display()))?;
        let name = path
            .file_name()
            .context("a repository path names a directory")?
            .to_string_lossy()
            .into_owned();
        let base = path.parent().context("a repository path has a parent")?;
        let daemon = GitDaemon::start(base);
        let _pinned = Pinning::upstream_apart(daemon.pid())?;
        let url = daemon.url(&name);
        let (objects, refs) = shape(&path)?;
        println!("import of {name}: {objects} objects, {refs} refs, served by git daemon");
        let (ours, ours_rss, run) = import(&url).await?;
        let anon = run.peak_anon_mib;
        let (cli, cli_rss, clone) = clone_mirror(&url)?;
        let same = refs_of(&clone)? == refs_of(&run.mirror)?;
        ensure!(same, "the mirror's refs differ from git clone --mirror's");
        fsck(&run.mirror)?;
        println!(
            "import of {name}: {:.1} s to success (listing {:.1} s, fetch {:.1} s, the rest \
             {:.1} s), housekeeping done {:.1} s after the request ({} ms recorded), worker \
             peak RSS {:.0} MiB ({anon:.0} MiB of it anonymous, the rest \
             file pages it maps: its code and the packs); git clone --mirror {:.1} s, peak RSS {:.0} MiB; refs \
             equal, fsck clean",
            ours,
            run.list_ms as f64 / 1e3,
            run.fetch_ms as f64 / 1e3,
            ours - (run.list_ms + run.fetch_ms) as f64 / 1e3,
            run.released_secs,
            run.housekeeping_ms,
            ours_rss,
            cli,
            cli_rss
        );
        let label = format!("{name} ({objects} objects, {refs} refs)");
        rows.push(
            Row::new(
                "import (real)",
                &format!("request to success, {label}"),
                ours,
                "s",
            )
            .against("git clone --mirror", cli)
            .target("≤ 1.1×"),
        );
        rows.push(
            Row::new(
                "import (real)",
                &format!("request to housekeeping done (lock released), {label}"),
                run.released_secs,
                "s",
            )
            .against("git clone --mirror", cli),
        );
        rows.push(
            Row::new(
                "import (real)",
                &format!("peak RSS, {label}"),
                ours_rss,
                "MiB",
            )
            .against("git clone --mirror", cli_rss)
            .target("≤ 1.5×"),
        );
        rows.push(
            Row::new(
                "import (real)",
                &format!("peak anonymous RSS (file mappings aside), {label}"),
                anon,
                "MiB",
            )
            .against("git clone --mirror's whole RSS", cli_rss),
        );
        let _ = std::fs::remove_dir_all(&clone);
    }
    Ok(())
}

struct Imported {
    mirror: PathBuf,
    list_ms: i64,
    fetch_ms: i64,
    /// Seconds from the request until the mirror's lock was released: its housekeeping
    /// done and recorded.
    released_secs: f64,
    housekeeping_ms: i64,
    /// The worker's largest anonymous memory seen (sampled): what it allocated, without
    /// the file pages it maps (its code, and the packs libgit2 maps while indexing),
    /// which the kernel can drop and read again.
    peak_anon_mib: f64,
    /// Keeps the mirror's directory until the comparison is done.
    _env: TestEnv,
}

/// Seconds from the request to `success`, the worker's peak RSS (MiB), and the run.
async fn import(url: &str) -> anyhow::Result<(f64, f64, Imported)> {
    let env = TestEnv::new().await;
    let (owner, _) = env.user("bench", false).await;
    let repo = env.mirror(&owner, "real", url).await;
    let mut worker = Command::new(sibling_binary("stasis-worker")?)
        .envs(env.env_vars())
        .env("STASIS_WORKER_CONCURRENCY", "1")
        .env("STASIS_SYNC_TIMEOUT", "3600s")
        .env("STASIS_MIRROR_MAX_SIZE", "100GiB")
        .env("STASIS_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let result = async {
        // the worker registered and idle before the clock starts
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        env.jobs().request(repo, SyncReason::Import).await?;
        let deadline = started + Duration::from_secs(3600);
        let mut peak_anon = 0.0f64;
        loop {
            peak_anon = peak_anon.max(rss_kib(worker.id(), "RssAnon:").unwrap_or(0.0));
            let status: String =
                sqlx::query_scalar("SELECT sync_status FROM repositories WHERE id = $1")
                    .bind(repo)
                    .fetch_one(&env.pool)
                    .await?;
            match status.as_str() {
                "success" => break,
                "failed" => anyhow::bail!("the import failed"),
                _ => {}
            }
            ensure!(Instant::now() < deadline, "the import took over an hour");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        // the serving indexes are written after success; the clone must not run beside
        env.released(repo, Duration::from_secs(3600)).await;
        let released = started.elapsed().as_secs_f64();
        let rss = rss_kib(worker.id(), "VmHWM:")? / 1024.0;
        let (list_ms, fetch_ms, housekeeping_ms): (Option<i32>, Option<i32>, Option<i32>) =
            sqlx::query_as(
                "SELECT list_ms, fetch_ms, housekeeping_ms FROM sync_runs WHERE repo_id = $1",
            )
            .bind(repo)
            .fetch_one(&env.pool)
            .await?;
        let housekeeping_ms = housekeeping_ms.context("housekeeping recorded on the run")?;
        let times = (secs, released, list_ms, fetch_ms, housekeeping_ms);
        anyhow::Ok((times, rss, peak_anon / 1024.0))
    }
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    let ((secs, released_secs, list_ms, fetch_ms, housekeeping_ms), rss, peak_anon_mib) = result?;
    Ok((
        secs,
        rss,
        Imported {
            mirror: env.mirror_path("bench", "real"),
            list_ms: list_ms.unwrap_or(0).into(),
            fetch_ms: fetch_ms.unwrap_or(0).into(),
            released_secs,
            housekeeping_ms: housekeeping_ms.into(),
            peak_anon_mib,
            _env: env,
        },
    ))
}

/// `git clone --mirror`: seconds, the peak RSS of its largest process (MiB), the clone.
/// Run under a Python parent whose only children are the clone's, so `RUSAGE_CHILDREN`
/// is the clone's alone.
fn clone_mirror(url: &str) -> anyhow::Result<(f64, f64, PathBuf)> {
    let target = std::env::temp_dir().join(format!("stasis-bench-clone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    let started = Instant::now();
    let out = Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\n\
             subprocess.run(sys.argv[1:], check=True)\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            "git",
            "clone",
            "-q",
            "--mirror",
            url,
        ])
        .arg(&target)
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "git clone --mirror: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: f64 = String::from_utf8(out.stdout)?.trim().parse()?;
    Ok((secs, kib / 1024.0, target))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Objects reachable from the refs, and the refs.
fn shape(repo: &Path) -> anyhow::Result<(usize, usize)> {
    let refs = git(repo, &["for-each-ref", "--format=%(refname)"])?
        .lines()
        .count();
    let objects = git(repo, &["rev-list", "--objects", "--all"])?
        .lines()
        .count();
    Ok((objects, refs))
}

fn refs_of(repo: &Path) -> anyhow::Result<String> {
    git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
            "refs/pull",
        ],
    )
}

fn fsck(repo: &Path) -> anyhow::Result<()> {
    git(repo, &["fsck", "--no-progress", "--connectivity-only"]).map(|_| ())
}
