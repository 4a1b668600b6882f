//! Benchmark 2: the initial clone and the incremental fetch, the pipeline against bare
//! libgit2 and the git CLI.

use std::path::PathBuf;

use stasis_shared::domain::SyncReason;

use super::baselines::{cli_fetch, git2_fetch};
use super::{bench, sh, start_worker, sync_one, time, Bench};
use crate::fixture::copy_dir;
use crate::report::{quantile, Row};
use crate::Scale;

/// Benchmark 2: the initial clone and the incremental fetch.
pub async fn run_fetch(scale: &Scale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // every field bound: one left in the temporary would be dropped (the daemon stopped)
    let Bench {
        env,
        mut medium,
        daemon: _daemon,
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
