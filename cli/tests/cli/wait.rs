//! `stasisctl mirrors sync --wait` on a slow upstream, its output piped: plain lines
//! with the download's objects moving against their total, then the end.

use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;

use crate::Ctl;

/// "receiving objects: 12 of 153, 240.0 KB" → (12, 153).
fn objects(line: &str) -> Option<(u64, u64)> {
    let counts = line.strip_prefix("receiving objects: ")?;
    let (done, rest) = counts.split_once(" of ")?;
    let (of, _) = rest.split_once(',')?;
    Some((done.parse().ok()?, of.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_for_a_slow_sync_prints_its_objects_moving_then_its_end() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    // 3 MB in 150 objects at 250 kB/s: about 12 s of download
    up.add_blobs("data", 150, 20_000);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 250_000).await;
    let (erin, _) = env.user("erin", false).await;
    env.mirror(&erin, "up", &proxy.url("up")).await;
    let worker = env.spawn_worker();

    let out = Ctl { env: &env }
        .ok(&["mirrors", "sync", "erin/up", "--wait"])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"erin/up synced"), "{out}");
    let seen: Vec<(u64, u64)> = lines.iter().filter_map(|l| objects(l)).collect();
    assert!(seen.len() >= 2, "{out}");
    let (first, last) = (seen[0], seen[seen.len() - 1]);
    assert!(first.1 > 150 && last.1 == first.1, "{out}");
    assert!(last.0 > first.0, "{out}");
    // piped: no bar, no control characters
    assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
    assert_mirrors(&env.mirror_path("erin", "up"), &up);
    worker.stop().await;
}
