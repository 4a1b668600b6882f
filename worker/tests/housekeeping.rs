//! A mirror stays small and fast over a long life: hundreds of incremental syncs leave a
//! logarithmic number of packs, and a failed import leaves nothing on disk. Drives
//! `fetch_mirror` and the worker's housekeeping directly, without the queue.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_shared::domain::ErrorKind;
use stasis_shared::git::selection::RefSelection;
use stasis_shared::Config;
use stasis_testkit::git::{assert_mirrors, git, Upstream};
use stasis_worker::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, TransferProgress,
};
use stasis_worker::git::gate::WriteGate;
use stasis_worker::git::housekeeping::RepackKind;
use stasis_worker::git::transport::NetworkPolicy;
use stasis_worker::sync::housekeeping::{after_sync, Housekept};

/// 300 incremental syncs: without housekeeping they would leave 301 packs.
const SYNCS: usize = 300;
/// log2(300) is about 8; a cruft pack and a pack not yet rolled up come on top.
const MAX_PACKS: u64 = 12;

fn sync(mirror: &Path, url: &str) -> Result<FetchReport, FetchError> {
    let gate = WriteGate::default();
    gate.decide(true);
    fetch_mirror(&FetchRequest {
        path: mirror,
        url,
        deadline: Instant::now() + Duration::from_secs(120),
        stop: &Arc::new(StopFlag::default()),
        network: &NetworkPolicy {
            allow_local_network: true,
            ..NetworkPolicy::from_config(&Config::default())
        },
        selection: &RefSelection::default(),
        gate: &gate,
        progress: &TransferProgress::default(),
        ssh: &Default::default(),
    })
}

fn packs(mirror: &Path) -> u64 {
    git(mirror, &["count-objects", "-v"])
        .lines()
        .find_map(|l| l.strip_prefix("packs: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("count-objects reports packs")
}

async fn sync_and_housekeep(cfg: &Config, mirror: &Path, up: &Upstream) -> Housekept {
    let report = sync(mirror, &up.url()).expect("sync");
    after_sync(cfg, mirror, &report, &Arc::new(StopFlag::default())).await
}

#[tokio::test]
async fn hundreds_of_syncs_keep_packs_logarithmic_and_the_mirror_sound() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(dir.path().join("up"));
    git(&up.path, &["branch", "doomed"]);
    let mirror = dir.path().join("mirror.git");
    let mut cfg = Config::default();
    // full repacks within the test's span, and garbage dropped at once
    cfg.housekeeping.full_repack_every = 100;
    cfg.housekeeping.prune_grace = Duration::ZERO;

    let began = Instant::now();
    let imported = sync_and_housekeep(&cfg, &mirror, &up).await;
    assert_eq!(
        imported.repack.map(|(kind, _)| kind),
        Some(RepackKind::Geometric)
    );
    let mut full = 0;
    for i in 0..SYNCS {
        match i {
            // a ref deleted upstream leaves objects only it reached
            100 => {
                git(&up.path, &["checkout", "-q", "doomed"]);
                up.commit("only on doomed");
                git(&up.path, &["checkout", "-q", "main"]);
                git(&up.path, &["branch", "-D", "doomed"]);
            }
            // a force-push: main loses its last commit
            200 => {
                git(&up.path, &["reset", "-q", "--hard", "HEAD~1"]);
            }
            _ => {}
        }
        up.commit(&format!("change {i}"));
        let done = sync_and_housekeep(&cfg, &mirror, &up).await;
        let (kind, _) = done.repack.expect("a sync that wrote is housekept");
        full += usize::from(kind == RepackKind::Full);
        assert!(done.size_bytes.is_some_and(|b| b > 0));
        assert!(
            packs(&mirror) <= MAX_PACKS,
            "{} packs after sync {i}",
            packs(&mirror)
        );
    }
    assert!(full >= 2, "full repacks ran: {full}");
    assert_mirrors(&mirror, &up);
    git(&mirror, &["fsck", "--no-progress", "--strict"]);
    assert!(mirror.join("objects/info/commit-graphs").is_dir());
    // an unchanged sync does nothing
    let report = sync(&mirror, &up.url()).expect("no-op sync");
    assert!(report.unchanged);
    let idle = after_sync(&cfg, &mirror, &report, &Arc::new(StopFlag::default())).await;
    assert_eq!(idle, Housekept::default());
    eprintln!(
        "benchmark: {SYNCS} syncs with housekeeping in {:?}, {} packs",
        began.elapsed(),
        packs(&mirror)
    );
}

#[tokio::test]
async fn housekeeping_off_leaves_packs_alone_and_the_sync_stands() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(dir.path().join("up"));
    let mirror = dir.path().join("mirror.git");
    let mut cfg = Config::default();
    cfg.housekeeping.enabled = false;
    sync_and_housekeep(&cfg, &mirror, &up).await;
    up.commit("next");
    let done = sync_and_housekeep(&cfg, &mirror, &up).await;
    assert_eq!(done.repack, None);
    assert!(done.size_bytes.is_some());
    assert_eq!(packs(&mirror), 2);
}

#[test]
fn a_failed_import_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("alice").join("missing.git");
    let missing = format!("file://{}", dir.path().join("no-such-upstream").display());
    let error = sync(&mirror, &missing).expect_err("no upstream there");
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(!mirror.exists(), "empty mirror left behind");
    assert!(
        !dir.path().join("alice").exists(),
        "empty owner directory left behind"
    );

    // a mirror that once synced keeps its refs through a failed sync
    let up = Upstream::create(dir.path().join("up"));
    sync(&mirror, &up.url()).expect("import");
    sync(&mirror, &missing).expect_err("upstream gone");
    assert_mirrors(&mirror, &up);
}

/// A pass that failed (here: git cannot take the multi-pack index's lock) is not left
/// for the mirror's next change: the next sync runs it again, even one that fetched
/// nothing, once its backoff ends; after it succeeds, unchanged syncs do nothing again.
#[tokio::test]
async fn a_failed_pass_is_run_again_by_a_later_sync_that_fetched_nothing() {
    use stasis_worker::git::housekeeping::Retry;

    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(dir.path().join("up"));
    let mirror = dir.path().join("mirror.git");
    let mut cfg = Config::default();
    cfg.housekeeping.retry_base_delay = Duration::from_secs(3600);
    sync_and_housekeep(&cfg, &mirror, &up).await;

    let lock = mirror.join("objects/pack/multi-pack-index.lock");
    std::fs::write(&lock, "").unwrap();
    up.commit("next");
    let failed = sync_and_housekeep(&cfg, &mirror, &up).await;
    assert_eq!(failed.repack, None, "the pass failed");
    let retry = Retry::read(&mirror).expect("the failure is remembered");
    assert_eq!((retry.kind, retry.failures), (RepackKind::Geometric, 1));
    let unrolled = packs(&mirror);
    std::fs::remove_file(&lock).unwrap();

    // within its backoff, an unchanged sync leaves it
    let report = sync(&mirror, &up.url()).expect("no-op sync");
    assert!(report.unchanged);
    let stop = Arc::new(StopFlag::default());
    assert_eq!(
        after_sync(&cfg, &mirror, &report, &stop).await,
        Housekept::default()
    );

    cfg.housekeeping.retry_base_delay = Duration::ZERO;
    Retry {
        not_before: std::time::SystemTime::now(),
        ..retry
    }
    .write(&mirror)
    .unwrap();
    let retried = after_sync(&cfg, &mirror, &report, &stop).await;
    assert_eq!(
        retried.repack.map(|(kind, _)| kind),
        Some(RepackKind::Geometric)
    );
    assert!(retried.size_bytes.is_some());
    assert!(packs(&mirror) < unrolled, "{} packs", packs(&mirror));
    assert_eq!(Retry::read(&mirror), None, "forgotten once done");
    assert_eq!(
        after_sync(&cfg, &mirror, &report, &stop).await,
        Housekept::default()
    );
    assert_mirrors(&mirror, &up);
}
