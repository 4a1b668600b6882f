//! A fleet already imported: one mirror imported by a worker, the way every import goes,
//! then its directory and its row's state given to every other mirror, each due at its
//! own moment of the first interval (as a fleet imported over time is).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use stasis_shared::domain::SyncReason;
use stasis_testkit::fleet::FleetUpstream;
use stasis_testkit::TestEnv;
use uuid::Uuid;

const OWNER: &str = "fleet";

/// Rows for `n` mirrors `m0`… of the upstream's repositories `0`…, none due yet.
pub async fn rows(env: &TestEnv, upstream: &FleetUpstream, n: usize) -> anyhow::Result<Uuid> {
    let (owner, _) = env.user(OWNER, false).await;
    sqlx::query(
        "INSERT INTO repositories (id, owner_id, name, is_mirror, mirror_url)
         SELECT gen_random_uuid(), $1, 'm' || k, true, $2 || k || '.git'
         FROM generate_series(0, $3 - 1) k",
    )
    .bind(owner.id)
    .bind(format!("http://{}/r/", upstream.addr))
    .bind(n as i64)
    .execute(&env.pool)
    .await?;
    let first: Uuid = sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'm0'")
        .fetch_one(&env.pool)
        .await?;
    Ok(first)
}

/// Imports `m0` through the running workers and waits for it.
pub async fn import_first(env: &TestEnv, first: Uuid) -> anyhow::Result<()> {
    env.jobs().request(first, SyncReason::Import).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: String =
            sqlx::query_scalar("SELECT sync_status FROM repositories WHERE id = $1")
                .bind(first)
                .fetch_one(&env.pool)
                .await?;
        match status.as_str() {
            "success" => return Ok(()),
            "failed" => anyhow::bail!("the first mirror's import failed"),
            _ => {}
        }
        ensure!(
            Instant::now() < deadline,
            "the first mirror's import: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every other mirror as `m0` is, on disk and in its row, due within `interval`.
pub async fn replicate(env: &TestEnv, n: usize, interval: Duration) -> anyhow::Result<()> {
    let template = env.mirror_path(OWNER, "m0");
    let paths: Vec<_> = (1..n)
        .map(|i| env.mirror_path(OWNER, &format!("m{i}")))
        .collect();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // two threads: the copy is metadata work the disk does, not the CPU
        let (a, b) = paths.split_at(paths.len() / 2);
        std::thread::scope(|s| {
            let one = s.spawn(|| a.iter().try_for_each(|p| copy_mirror(&template, p)));
            let two = s.spawn(|| b.iter().try_for_each(|p| copy_mirror(&template, p)));
            one.join().expect("copy thread")?;
            two.join().expect("copy thread")
        })
    })
    .await??;
    sqlx::query(
        "UPDATE repositories r SET sync_status = m.sync_status,
             last_synced_at = m.last_synced_at, size_bytes = m.size_bytes,
             refs_fingerprint = m.refs_fingerprint, last_duration_ms = m.last_duration_ms,
             next_sync_at = now() + make_interval(secs => random() * $1)
         FROM repositories m
         WHERE m.name = 'm0' AND r.owner_id = m.owner_id AND r.id <> m.id",
    )
    .bind(interval.as_secs_f64())
    .execute(&env.pool)
    .await?;
    sqlx::query("VACUUM ANALYZE repositories")
        .execute(&env.pool)
        .await?;
    Ok(())
}

/// A mirror's directory from another's: objects are never rewritten in place, so they
/// are linked; everything else (refs, config) is written by replacing files, and copied.
fn copy_mirror(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_mirror(&src, &dst)?;
        } else if src.components().any(|c| c.as_os_str() == "objects") {
            std::fs::hard_link(&src, &dst).with_context(|| format!("link {}", dst.display()))?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copy {}", dst.display()))?;
        }
    }
    Ok(())
}
