//! What the pipeline is measured against: `git fetch` (one process per fetch, as a cron
//! job runs it) and bare libgit2 fetches and ref listings in this process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use stasis_worker::git::transport;

use super::{sh, time};

/// `git fetch --prune` of each of `mirrors` from its URL, `parallelism` at a time
/// (`xargs -P`, one `git` process per fetch as a cron job would run it).
pub(super) fn cli_fetch_loop(
    mirrors: &[(PathBuf, String)],
    parallelism: usize,
    v0: bool,
) -> anyhow::Result<f64> {
    let list = std::env::temp_dir().join(format!("stasis-bench-{}.list", std::process::id()));
    let lines: Vec<String> = mirrors
        .iter()
        .map(|(path, url)| {
            format!(
                "--git-dir={} fetch --prune -q {url} +refs/*:refs/*",
                path.display()
            )
        })
        .collect();
    std::fs::write(&list, lines.join("\n"))?;
    let proto = if v0 { "-c protocol.version=0" } else { "" };
    let script = format!(
        "xargs -a {} -P {parallelism} -L 1 git {proto}",
        list.display()
    );
    let (result, secs) = time(|| sh(&script));
    let _ = std::fs::remove_file(&list);
    result?;
    Ok(secs)
}

/// The rules libgit2 connects under in this process (our transports serve git:// and
/// HTTP for the whole process once the worker has fetched): local upstreams, no deadline.
pub(super) fn open_session() -> std::sync::Arc<transport::Session> {
    let policy = transport::NetworkPolicy {
        allow_local_network: true,
        ..transport::NetworkPolicy::from_config(&stasis_shared::Config::default())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    transport::Session::new(policy, deadline, Default::default())
}

/// libgit2 connect + ref listing for `count` mirrors, `parallelism` threads, taking
/// `urls` in turn.
pub(super) fn git2_list_loop(
    urls: &[String],
    count: usize,
    parallelism: usize,
) -> anyhow::Result<f64> {
    let next = AtomicUsize::new(0);
    let (result, secs) = time(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parallelism)
                .map(|_| {
                    s.spawn(|| -> Result<(), git2::Error> {
                        let _session = transport::enter(open_session());
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                return Ok(());
                            }
                            let url = &urls[i % urls.len()];
                            let mut remote = git2::Remote::create_detached(url.as_str())?;
                            let conn = remote.connect_auth(git2::Direction::Fetch, None, None)?;
                            conn.list()?;
                        }
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

/// On a thread of its own, as the worker's fetches run: our HTTP transport blocks on a
/// runtime of its own, which it cannot do on a thread that drives async tasks.
pub(super) fn git2_fetch(path: &Path, url: &str) -> anyhow::Result<f64> {
    std::thread::scope(|s| s.spawn(|| git2_fetch_here(path, url)).join())
        .map_err(|_| anyhow::anyhow!("git2 fetch thread panicked"))?
}

pub(super) fn git2_fetch_here(path: &Path, url: &str) -> anyhow::Result<f64> {
    let (result, secs) = time(|| -> Result<(), git2::Error> {
        let _session = transport::enter(open_session());
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

pub(super) fn cli_fetch(path: &Path, url: &str, v0: bool) -> anyhow::Result<f64> {
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
