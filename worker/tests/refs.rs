//! A mirror's refs change all at once or not at all, and pruning thousands is quick:
//! `fetch_mirror` against file:// upstreams, without the queue.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stasis_shared::domain::ErrorKind;
use stasis_shared::git::selection::RefSelection;
use stasis_testkit::git::{assert_mirrors, git, refs, Upstream};
use stasis_worker::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, TransferProgress,
};
use stasis_worker::git::gate::WriteGate;
use stasis_worker::git::transport::NetworkPolicy;

fn sync(mirror: &Path, up: &Upstream) -> Result<FetchReport, FetchError> {
    let gate = WriteGate::default();
    gate.decide(true);
    fetch_mirror(&FetchRequest {
        path: mirror,
        url: &up.url(),
        deadline: Instant::now() + Duration::from_secs(120),
        stop: &Arc::new(StopFlag::default()),
        network: &NetworkPolicy {
            allow_local_network: true,
            ..NetworkPolicy::from_config(&stasis_shared::Config::default())
        },
        selection: &RefSelection::default(),
        gate: &gate,
        progress: &TransferProgress::default(),
        ssh: &Default::default(),
    })
}

/// Feeds `commands` (one per line) to `git update-ref --stdin` in `dir`: thousands of
/// refs in one process instead of one each.
fn update_refs(dir: &Path, commands: impl Iterator<Item = String>) {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["update-ref", "--stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run git update-ref");
    let mut stdin = child.stdin.take().unwrap();
    for command in commands {
        writeln!(stdin, "{command}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "git update-ref failed");
}

#[test]
fn pruning_ten_thousand_tags_is_one_quick_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::create(dir.path().join("up"));
    let head = git(&up.path, &["rev-parse", "HEAD"]).trim().to_owned();
    git(
        &up.path,
        &["tag", "-a", "annotated", "-m", "peeled in packed-refs"],
    );
    update_refs(
        &up.path,
        (0..12_000).map(|i| format!("create refs/tags/t{i:05} {head}")),
    );
    let mirror = dir.path().join("mirror.git");
    let imported = sync(&mirror, &up).expect("import");
    assert_eq!(imported.refs_created, 12_002);
    assert_mirrors(&mirror, &up);

    update_refs(
        &up.path,
        (0..10_000).map(|i| format!("delete refs/tags/t{i:05}")),
    );
    let began = Instant::now();
    let pruned = sync(&mirror, &up).expect("sync after the deletions");
    let took = began.elapsed();
    assert_eq!(pruned.refs_pruned, 10_000);
    assert_eq!(pruned.refs_changed(), 0);
    assert_mirrors(&mirror, &up);
    let peeled = |dir: &Path| git(dir, &["show-ref", "--dereference"]);
    assert_eq!(peeled(&mirror), peeled(&up.path), "tags still peel");
    eprintln!(
        "benchmark: pruned 10,000 of 12,002 refs in {took:?} (sync), {:?} (download and ref update)",
        pruned.fetch_time
    );
}

#[test]
fn a_locked_ref_fails_the_sync_and_changes_no_ref() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(dir.path().join("up"));
    git(&up.path, &["tag", "a"]);
    git(&up.path, &["tag", "b"]);
    git(&up.path, &["branch", "feature"]);
    let mirror = dir.path().join("mirror.git");
    sync(&mirror, &up).expect("import");
    assert_mirrors(&mirror, &up);
    let before = refs(&mirror);

    // a new commit on main, a deletion, a creation and a moved tag: one transaction
    up.commit("next");
    git(&up.path, &["branch", "-D", "feature"]);
    git(&up.path, &["tag", "c"]);
    git(&up.path, &["tag", "-f", "a"]);
    // a stale lock left by a writer that died
    std::fs::write(mirror.join("refs/tags/b.lock"), "").unwrap();
    git(&up.path, &["tag", "-d", "b"]);

    let error = sync(&mirror, &up).expect_err("the locked ref fails the update");
    assert_eq!(error.kind, ErrorKind::Disk, "{error}");
    assert!(error.message.contains("refs/tags/b"), "{error}");
    assert_eq!(refs(&mirror), before, "no ref changed");
    assert!(!mirror.join("packed-refs.lock").exists(), "locks released");
    assert!(!mirror.join("refs/tags/a.lock").exists(), "locks released");

    std::fs::remove_file(mirror.join("refs/tags/b.lock")).unwrap();
    let report = sync(&mirror, &up).expect("sync once the lock is gone");
    assert_mirrors(&mirror, &up);
    assert_eq!(
        (report.refs_created, report.refs_updated, report.refs_pruned),
        (1, 2, 2),
        "c; main, a; feature, b"
    );
}
