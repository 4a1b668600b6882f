//! Benchmarks 1 and 2: the no-op sync of many up-to-date mirrors end to end against a
//! `git fetch` loop and a bare libgit2 ref-listing loop; the incremental fetch and the
//! initial clone against bare libgit2 and the git CLI, over git:// and smart HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use stasis_shared::domain::SyncReason;
use stasis_testkit::git::GitDaemon;
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::cpu::Cpu;
use crate::fixture::{copy_dir, HttpBackend, Medium};
use crate::report::{quantile, Row};
use crate::Scale;

const WAIT: Duration = Duration::from_secs(600);

/// A worker of this process with `concurrency` slots.
fn start_worker(env: &TestEnv, concurrency: usize) -> InProcessWorker {
    let mut cfg = env.cfg.clone();
    cfg.worker.concurrency = concurrency;
    InProcessWorker::start(cfg, env.pool.clone(), env.redis.clone())
}

async fn done_jobs(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE state = 'done'")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until `target` jobs are done; returns when the last of them finished, by the
/// database's clock, so polling slowly (not to compete with the syncs it times) costs no
/// precision.
async fn wait_done(pool: &PgPool, target: i64) -> anyhow::Result<DateTime<Utc>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (done, last): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT count(*), max(finished_at) FROM sync_jobs WHERE state = 'done'")
                .fetch_one(pool)
                .await?;
        if done >= target {
            return last.context("finished jobs have a finish time");
        }
        ensure!(Instant::now() < deadline, "syncs did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs one job through the pipeline and returns its run's duration (lock held, fetch,
/// bookkeeping) in seconds.
async fn sync_one(env: &TestEnv, repo: Uuid, reason: SyncReason) -> anyhow::Result<f64> {
    let job = env.enqueue(repo, reason).await;
    let finished = env.finished(job, WAIT).await;
    ensure!(
        finished.state == "done",
        "sync failed: {:?}",
        finished.last_error
    );
    let run = env.runs(job).await.pop().context("run recorded")?;
    let took = run.finished_at.context("finished")? - run.started_at;
    Ok(took.num_microseconds().unwrap_or(0) as f64 / 1e6)
}

/// The host's CPU counters once the processes a phase forked have been reaped.
async fn settled_cpu() -> Cpu {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Cpu::now()
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

/// `git fetch --prune` of every mirror, `parallelism` at a time (`xargs -P`).
fn cli_fetch_loop(mirrors: &Path, url: &str, parallelism: usize, v0: bool) -> anyhow::Result<f64> {
    let proto = if v0 { "-c protocol.version=0" } else { "" };
    let script = format!(
        "ls -d {}/*/*.git | xargs -P {parallelism} -I{{}} git -C {{}} {proto} fetch --prune -q {url} '+refs/*:refs/*'",
        mirrors.display()
    );
    let (result, secs) = time(|| sh(&script));
    result?;
    Ok(secs)
}

/// libgit2 connect + ref listing for `count` mirrors, `parallelism` threads.
fn git2_list_loop(url: &str, count: usize, parallelism: usize) -> anyhow::Result<f64> {
    let next = AtomicUsize::new(0);
    let (result, secs) = time(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parallelism)
                .map(|_| {
                    s.spawn(|| -> Result<(), git2::Error> {
                        while next.fetch_add(1, Ordering::Relaxed) < count {
                            let mut remote = git2::Remote::create_detached(url)?;
                            let conn = remote.connect_auth(git2::Direction::Fetch, None, None)?;
                            conn.list()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("listing thread"))
        })
    });
    result?;
    Ok(secs)
}

fn git2_fetch(path: &Path, url: &str) -> anyhow::Result<f64> {
    let (result, secs) = time(|| -> Result<(), git2::Error> {
        let repo = match git2::Repository::open_bare(path) {
            Ok(repo) => repo,
            Err(_) => git2::Repository::init_bare(path)?,
        };
        let mut remote = repo.remote_anonymous(url)?;
        let mut opts = git2::FetchOptions::new();
        opts.prune(git2::FetchPrune::On)
            .download_tags(git2::AutotagOption::All)
            .update_fetchhead(false);
        remote.fetch(&["+refs/*:refs/*"], Some(&mut opts), None)
    });
    result?;
    Ok(secs)
}

fn cli_fetch(path: &Path, url: &str, v0: bool) -> anyhow::Result<f64> {
    let proto = if v0 { "-c protocol.version=0" } else { "" };
    let (result, secs) = time(|| {
        sh(&format!(
            "git -C {} {proto} fetch --prune -q {url} '+refs/*:refs/*'",
            path.display()
        ))
    });
    result?;
    Ok(secs)
}

/// What both benchmarks start from: the medium upstream served over git:// and smart
/// HTTP, and a worker-less environment whose user owns the mirrors.
struct Bench {
    env: TestEnv,
    medium: Medium,
    // kept alive: they serve the upstream
    _daemon: GitDaemon,
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
    let daemon = GitDaemon::start(&served);
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
        _daemon: daemon,
        http,
        url,
        owner,
    }
}

/// Benchmark 2: the initial clone and the incremental fetch.
pub async fn run_fetch(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // every field bound: one left in the temporary would be dropped (the daemon stopped)
    let Bench {
        env,
        mut medium,
        _daemon,
        http,
        url,
        owner,
    } = bench(scale).await;
    // initial clone: the pipeline's import against `git clone --mirror` and bare git2
    let first = env.mirror(&owner, "m0", &url).await;
    let clone_root = env.dir.path().join("clones");
    std::fs::create_dir_all(&clone_root)?;
    let worker = start_worker(&env, 1);
    let import = sync_one(&env, first, SyncReason::Import).await?;
    let bare = git2_fetch(&clone_root.join("git2.git"), &url)?;
    let (cli, cli_secs) = time(|| {
        sh(&format!(
            "git clone -q --mirror {url} {}",
            clone_root.join("cli.git").display()
        ))
    });
    cli?;
    rows.push(
        Row::new(
            "2 initial clone",
            "pipeline import (git://)",
            import * 1e3,
            "ms",
        )
        .against("git2 bare fetch", bare * 1e3),
    );
    rows.push(
        Row::new(
            "2 initial clone",
            "pipeline import (git://)",
            import * 1e3,
            "ms",
        )
        .against("git clone --mirror", cli_secs * 1e3),
    );

    // incremental: 10 new upstream commits, over git:// and then smart HTTP
    let m0 = env.mirror_path("bench", "m0");
    for (transport, fetch_url) in [("git://", url.clone()), ("http", http.url("medium"))] {
        sqlx::query("UPDATE repositories SET mirror_url = $2 WHERE id = $1")
            .bind(first)
            .bind(&fetch_url)
            .execute(&env.pool)
            .await?;
        let copies: Vec<PathBuf> = ["git2", "v0", "v2"]
            .iter()
            .map(|name| {
                let path = clone_root.join(format!("incr-{name}-{}.git", transport.len()));
                copy_dir(&m0, &path);
                path
            })
            .collect();
        let (mut ours, mut git2s, mut v0s, mut v2s) = (vec![], vec![], vec![], vec![]);
        for _ in 0..scale.rounds {
            medium.advance(10);
            ours.push(sync_one(&env, first, SyncReason::Manual).await? * 1e3);
            git2s.push(git2_fetch(&copies[0], &fetch_url)? * 1e3);
            v0s.push(cli_fetch(&copies[1], &fetch_url, true)? * 1e3);
            v2s.push(cli_fetch(&copies[2], &fetch_url, false)? * 1e3);
        }
        let ours = quantile(&mut ours, 0.5);
        let figure = format!("sync of 10 new commits ({transport})");
        rows.push(
            Row::new("2 incremental", &figure, ours, "ms")
                .against("git2 bare fetch", quantile(&mut git2s, 0.5))
                .target("≤ 1.1×"),
        );
        rows.push(
            Row::new("2 incremental", &figure, ours, "ms")
                .against("git fetch v0", quantile(&mut v0s, 0.5)),
        );
        rows.push(
            Row::new("2 incremental", &figure, ours, "ms")
                .against("git fetch v2", quantile(&mut v2s, 0.5)),
        );
    }
    worker.stop().await;
    Ok(())
}

/// Benchmark 1: no-op syncs of up-to-date mirrors, end to end (scheduler claim → done).
pub async fn run_noop(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let Bench {
        env,
        medium: _medium,
        _daemon,
        http: _http,
        url,
        owner,
    } = bench(scale).await;
    let first = env.mirror(&owner, "m0", &url).await;
    let worker = start_worker(&env, 1);
    sync_one(&env, first, SyncReason::Import).await?;
    worker.stop().await;
    let m0 = env.mirror_path("bench", "m0");
    for i in 1..scale.mirrors {
        let name = format!("m{i}");
        env.mirror(&owner, &name, &url).await;
        copy_dir(&m0, &env.mirror_path("bench", &name));
    }
    let mirrors = env.cfg.storage.root.clone();
    let n = scale.mirrors;
    for parallelism in [2, 8] {
        let worker = start_worker(&env, parallelism);
        tokio::time::sleep(Duration::from_millis(500)).await;
        sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second'")
            .execute(&env.pool)
            .await?;
        let before = done_jobs(&env.pool).await?;
        println!("no-op syncs of {n} mirrors at parallelism {parallelism}");
        let started: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&env.pool)
            .await?;
        let cpu_before = Cpu::now();
        let tick =
            stasis_scheduler::due::enqueue_due(&env.cfg, &env.pool, &env.redis, &env.enqueuer())
                .await?;
        ensure!(tick.enqueued as usize == n, "enqueued {}", tick.enqueued);
        let last = wait_done(&env.pool, before + n as i64).await?;
        let ours_cpu = settled_cpu().await.per_op_since(&cpu_before, n);
        println!("pipeline, per no-op sync: {ours_cpu}");
        let ours = n as f64 / ((last - started).num_microseconds().unwrap_or(1) as f64 / 1e6);
        worker.stop().await;
        let unchanged: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE unchanged")
            .fetch_one(&env.pool)
            .await?;
        ensure!(unchanged as usize >= n, "only {unchanged} unchanged runs");

        let v2 = n as f64 / cli_fetch_loop(&mirrors, &url, parallelism, false)?;
        let v0 = n as f64 / cli_fetch_loop(&mirrors, &url, parallelism, true)?;
        let cpu_before = Cpu::now();
        let list = n as f64 / git2_list_loop(&url, n, parallelism)?;
        let list_cpu = settled_cpu().await.per_op_since(&cpu_before, n);
        println!("git2 listing loop, per listing: {list_cpu}");
        let figure = format!("no-op syncs, P={parallelism}");
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git fetch v2 loop", v2)
                .target("≥ 2×"),
        );
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git fetch v0 loop", v0)
                .target("≥ 2×"),
        );
        rows.push(
            Row::new("1 no-op", &figure, ours, "syncs/s")
                .against("git2 listing loop", list)
                .target("≥ 0.8×"),
        );
        let figure = format!("CPU per no-op sync, P={parallelism}");
        rows.push(
            Row::new("1 no-op", &figure, ours_cpu.total(), "ms")
                .against("git2 listing loop", list_cpu.total()),
        );
    }
    Ok(())
}
