//! What a failed sync records: the kind that matches what failed, and an error the
//! owner can read, without the server's storage paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use stasis_shared::domain::{ErrorKind, JobState, SyncReason};
use stasis_testkit::git::Upstream;
use stasis_testkit::hostile::{HostileGitServer, Hostility};
use stasis_testkit::TestEnv;

use crate::WAIT;

/// An upstream that answers with a valid ref advertisement and then garbage did answer:
/// a protocol error, not a network failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_after_the_advertisement_is_recorded_as_a_protocol_error() {
    let env = TestEnv::new().await;
    let server = HostileGitServer::start(Hostility::GarbageAfterAdvertisement);
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "x", &server.url("x.git")).await;
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    let runs = env.runs(job).await;
    assert!(!runs.is_empty());
    for run in &runs {
        assert_eq!(run.error_kind, Some(ErrorKind::GitProtocol), "{runs:?}");
    }
    worker.stop().await;
}

/// A tmpfs mounted over the storage root, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (or CAP_SYS_ADMIN): {status}"
        );
        Self(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The owner reads why in their words; where the server keeps its mirrors stays in the
/// worker's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_told_to_the_owner_without_the_storage_path() {
    let env = TestEnv::new().await;
    let root = env.cfg.storage.root.clone();
    let _disk = SmallDisk::mount(&root, "256k");
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.add_blob("big.bin", 2 << 20);
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "x", &up.url()).await;
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    let runs = env.runs(job).await;
    let error = env.repo(repo).await.sync_error.expect("error recorded");
    assert_eq!(
        error, "the mirror's storage is full (no space left on device)",
        "{runs:?}"
    );
    let root = root.display().to_string();
    for run in &runs {
        assert_eq!(run.error_kind, Some(ErrorKind::Disk), "{runs:?}");
        let text = run.error.as_deref().unwrap_or_default();
        assert!(!text.contains(&root), "storage path shown: {text}");
    }
    worker.stop().await;
}

/// Any failure naming a path of the storage: the owner's directory is a file here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_failure_is_a_disk_error_without_the_storage_path() {
    let env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "x", &up.url()).await;
    let mirror = env.mirror_path("alice", "x");
    let owner_dir = mirror.parent().unwrap();
    std::fs::create_dir_all(owner_dir.parent().unwrap()).unwrap();
    std::fs::write(owner_dir, "in the way").unwrap();
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    let runs = env.runs(job).await;
    let error = env.repo(repo).await.sync_error.expect("error recorded");
    let root = env.cfg.storage.root.display().to_string();
    assert!(!error.contains(&root), "storage path shown: {error}");
    assert!(error.contains("the mirror's storage"), "{error}");
    for run in &runs {
        // our storage, not a missing upstream: retried, and no stop of the schedule
        assert_eq!(run.error_kind, Some(ErrorKind::Disk), "{runs:?}");
        let text = run.error.as_deref().unwrap_or_default();
        assert!(!text.contains(&root), "storage path shown: {text}");
    }
    worker.stop().await;
}
