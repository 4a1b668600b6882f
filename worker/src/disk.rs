//! Free space where mirrors are stored, as `stasis_storage_free_bytes`: a full disk
//! fails every sync at once, and the alert on it has to come before that. Each worker
//! reports the filesystem it writes to (one shared volume, or a disk of its own).

use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

/// Samples the free space under `root` every `every`, until aborted. `statvfs` runs on
/// a blocking thread: on a network filesystem it can hang, and must not stall a runtime
/// thread while it does.
pub async fn watch(root: PathBuf, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // a root not made yet (no mirror imported) lives on its parent's filesystem
        let path = nearest_existing(&root);
        match tokio::task::spawn_blocking(move || free_bytes(&path)).await {
            Ok(Ok(free)) => metrics::gauge!("stasis_storage_free_bytes").set(free as f64),
            Ok(Err(e)) => {
                warn!(error = %e, root = %root.display(), "could not read free space of storage.root")
            }
            Err(e) => warn!(error = %e, "free space check did not finish"),
        }
    }
}

/// `path`, or its nearest ancestor that exists.
fn nearest_existing(path: &std::path::Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(path)
        .to_path_buf()
}

/// Bytes an unprivileged process may still write under `path`.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let free = super::free_bytes(dir.path()).unwrap();
        assert!(free > 0, "a test machine with a full disk: {free}");
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
        let missing = dir.path().join("not/made/yet");
        assert_eq!(super::nearest_existing(&missing), dir.path());
    }
}
