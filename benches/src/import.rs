//! Benchmark 10: imports of repositories shaped like real ones, against `git clone
//! --mirror` of the same upstream: one with thousands of refs (branches, annotated tags
//! and pull-request refs, as a GitHub project has) and one with a long history. Time to
//! fetch, bytes on disk (`du`), and the worker process's peak resident memory. The
//! upstream `git daemon` runs on a CPU of its own.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::GitDaemon;
use stasis_testkit::TestEnv;

use crate::memory::rss_kib;
use crate::pin::Pinning;
use crate::report::{quantile, Row};
use crate::{sibling_binary, Scale};

const ROUNDS: usize = 3;

/// A bare repository written by `git fast-import`: `commits` commits on main, each
/// changing one of 50 text files, and `refs` refs spread evenly over branches, annotated
/// tags and `refs/pull/<n>/head`, each at a commit of its own.
fn build(path: &Path, commits: usize, refs: usize) -> anyhow::Result<()> {
    let status = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(path)
        .status()?;
    ensure!(status.success(), "git init");
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(path)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stream = std::io::BufWriter::new(child.stdin.take().context("stdin")?);
    let when = 1_700_000_000u64;
    for i in 1..=commits {
        let text = format!(
            "{}\nrevision {i}\n",
            "a line of source text that changes now and then\n".repeat(20 + i % 30)
        );
        let msg = format!("change {i}\n");
        write!(
            stream,
            "commit refs/heads/main\nmark :{i}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{msg}",
            when + i as u64,
            msg.len()
        )?;
        if i > 1 {
            writeln!(stream, "from :{}", i - 1)?;
        }
        write!(
            stream,
            "M 100644 inline src/file{}.txt\ndata {}\n{text}\n",
            i % 50,
            text.len()
        )?;
    }
    for r in 0..refs {
        let at = 1 + (r * 7919) % commits;
        match r % 3 {
            0 => writeln!(stream, "reset refs/heads/topic/{r}\nfrom :{at}\n")?,
            1 => {
                let msg = format!("release {r}\n");
                write!(
                    stream,
                    "tag v1.{r}\nfrom :{at}\ntagger Bench <bench@example.com> {} +0000\ndata {}\n{msg}\n",
                    when + commits as u64 + r as u64,
                    msg.len()
                )?;
            }
            _ => writeln!(stream, "reset refs/pull/{r}/head\nfrom :{at}\n")?,
        }
    }
    drop(stream);
    ensure!(child.wait()?.success(), "git fast-import");
    // as a host serves it: one pack
    let status = Command::new("git")
        .arg("--git-dir")
        .arg(path)
        .args(["repack", "-adq"])
        .status()?;
    ensure!(status.success(), "git repack");
    Ok(())
}

/// Bytes `path` takes on disk, as `du` counts them (blocks, directories included).
fn du(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()?;
    ensure!(out.status.success(), "du {}", path.display());
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .context("du output")?
        .parse()?)
}

pub async fn run(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut env = TestEnv::new().await;
    env.cfg.sync.max_per_host = 0;
    let served = env.dir.path().join("served");
    std::fs::create_dir_all(&served)?;
    let shapes = [
        (
            "many refs",
            "manyrefs",
            scale.import_commits / 4,
            scale.import_refs,
        ),
        ("long history", "history", scale.import_commits, 30),
    ];
    for (_, name, commits, refs) in shapes {
        build(&served.join(name), commits, refs)?;
    }
    let daemon = GitDaemon::start(&served);
    let _pinned = Pinning::upstream_apart(daemon.pid())?;
    let (owner, _) = env.user("bench", false).await;
    let mut worker = Command::new(sibling_binary("stasis-worker")?)
        .envs(env.env_vars())
        .env("STASIS_WORKER_CONCURRENCY", "1")
        .env("STASIS_SYNC_MAX_PER_HOST", "0")
        .env("STASIS_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let clones = env.dir.path().join("clones");
    std::fs::create_dir_all(&clones)?;
    let result = async {
        for (label, name, commits, refs) in shapes {
            let url = daemon.url(name);
            let (mut ours, mut cli) = (Vec::new(), Vec::new());
            let (mut ours_disk, mut cli_disk, mut indexed_disk) = (0, 0, 0);
            // the two take turns, so the host's drift lands on both
            for round in 0..ROUNDS {
                let mirror = format!("{name}-{round}");
                let repo = env.mirror(&owner, &mirror, &url).await;
                let job = env.enqueue(repo, SyncReason::Import).await;
                let done = env.finished(job, Duration::from_secs(600)).await;
                ensure!(
                    done.state == JobState::Done,
                    "import failed: {:?}",
                    done.last_error
                );
                // housekeeping may go on after the job's end: the clone must not run beside
                env.released(repo, Duration::from_secs(600)).await;
                let run = env.runs(job).await.pop().context("run recorded")?;
                let took = run.finished_at.context("finished")? - run.started_at;
                ours.push(took.num_microseconds().unwrap_or(0) as f64 / 1e3);
                ours_disk = du(&env.mirror_path("bench", &mirror))?;

                let target = clones.join(format!("{mirror}.git"));
                let started = Instant::now();
                let status = Command::new("git")
                    .args(["clone", "-q", "--mirror", &url])
                    .arg(&target)
                    .status()?;
                ensure!(status.success(), "git clone --mirror");
                cli.push(started.elapsed().as_secs_f64() * 1e3);
                cli_disk = du(&target)?;
                // like for like: the clone with the indexes a mirror keeps for serving
                // clones (multi-pack bitmap, split commit-graph), as housekeeping writes
                for args in [
                    &[
                        "repack",
                        "-q",
                        "-a",
                        "-d",
                        "--write-midx",
                        "--write-bitmap-index",
                    ][..],
                    &["commit-graph", "write", "--reachable", "--split"],
                ] {
                    let status = Command::new("git")
                        .arg("--git-dir")
                        .arg(&target)
                        .args(args)
                        .stdout(Stdio::null())
                        .status()?;
                    ensure!(status.success(), "git {args:?}");
                }
                indexed_disk = du(&target)?;
            }
            let figure = format!("import, {label} ({commits} commits, {refs} refs)");
            rows.push(
                Row::new("10 import", &figure, quantile(&mut ours, 0.5), "ms")
                    .against("git clone --mirror", quantile(&mut cli, 0.5))
                    .target("≤ 1.1×"),
            );
            rows.push(
                Row::new(
                    "10 import",
                    &format!("disk, {label}"),
                    ours_disk as f64 / 1e6,
                    "MB",
                )
                .against("git clone --mirror", cli_disk as f64 / 1e6)
                .target("≤ 1.05×"),
            );
            rows.push(
                Row::new(
                    "10 import",
                    &format!("disk, {label}"),
                    ours_disk as f64 / 1e6,
                    "MB",
                )
                .against(
                    "the clone with the same serving indexes",
                    indexed_disk as f64 / 1e6,
                ),
            );
        }
        rows.push(Row::new(
            "10 import",
            "worker peak RSS over these imports",
            rss_kib(worker.id(), "VmHWM:")? / 1024.0,
            "MiB",
        ));
        anyhow::Ok(())
    }
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    result?;
    let real = if scale.import_repos.is_empty() {
        vec![served.join("manyrefs")]
    } else {
        scale.import_repos.clone()
    };
    crate::import_real::run(&real, rows).await
}
