//! Through the queue: a sync's status turns `success` once its refs (and LFS objects)
//! are recorded, while its housekeeping pass still runs under the repository's lock;
//! the pass's figures land on the same run afterwards, and a pass that fails then is
//! remembered while the success stands.
//!
//! The pass is held at will: this test binary puts a `git` of its own first on its
//! `PATH`, which waits before a `repack` while a file named after the repository
//! (`<mirror>.git.hold`) exists, then runs the real git. On a multi-thread runtime like
//! every in-process worker test (see `housekeeping_record.rs`).

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use stasis_shared::domain::{JobState, SyncReason, SyncStatus};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::{eventually, throughout, TestEnv};
use stasis_worker::git::housekeeping::{RepackKind, Retry};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// Puts the holding `git` first on the process's `PATH`, once, before any test spawns.
fn hold_repacks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let real = std::env::split_paths(&path)
            .map(|dir| dir.join("git"))
            .find(|git| git.is_file())
            .expect("git on PATH");
        let dir = std::env::temp_dir().join(format!("stasis-held-git-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "#!/bin/sh\n\
             case \" $* \" in *\" repack \"*)\n\
             \x20 while [ -e \"$GIT_DIR.hold\" ]; do sleep 0.05; done ;;\n\
             esac\n\
             exec '{}' \"$@\"\n",
            real.display()
        );
        let git = dir.join("git");
        std::fs::write(&git, script).unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&git, executable).unwrap();
        let paths = std::iter::once(dir).chain(std::env::split_paths(&path));
        std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
    });
}

fn hold_file(mirror: &Path) -> PathBuf {
    let mut name = mirror.as_os_str().to_owned();
    name.push(".hold");
    PathBuf::from(name)
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Figures {
    outcome: Option<String>,
    housekeeping: Option<String>,
    housekeeping_ms: Option<i32>,
}

async fn figures(env: &TestEnv, job: Uuid) -> Figures {
    sqlx::query_as(
        "SELECT outcome::text, housekeeping, housekeeping_ms FROM sync_runs WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&env.pool)
    .await
    .expect("the job's run")
}

/// A mirror of a fresh upstream whose import is held in its housekeeping pass, its
/// status showing `success`; a worker runs.
struct Held {
    env: TestEnv,
    up: Upstream,
    repo: Uuid,
    mirror: PathBuf,
    worker: stasis_testkit::worker::InProcessWorker,
    /// The import's job.
    import: Uuid,
}

async fn import_held() -> Held {
    hold_repacks();
    let env = TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "up", &up.url()).await;
    let mirror = env.mirror_path("alice", "up");
    let worker = env.spawn_worker();
    std::fs::create_dir_all(mirror.parent().unwrap()).unwrap();
    std::fs::write(hold_file(&mirror), "").unwrap();
    let import = env.enqueue(repo, SyncReason::Import).await;
    eventually("the import's success", WAIT, || async {
        (env.repo(repo).await.sync_status == SyncStatus::Success).then_some(())
    })
    .await;
    Held {
        env,
        up,
        repo,
        mirror,
        worker,
        import,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_turns_success_before_housekeeping_whose_figures_land_on_the_run_after() {
    let Held {
        env,
        up,
        repo,
        mirror,
        worker,
        import,
    } = import_held().await;

    // the end is recorded whole: the job done, the run a success, the refs in place
    assert_eq!(env.job(import).await.state, JobState::Done);
    assert_mirrors(&mirror, &up);
    assert_eq!(
        figures(&env, import).await,
        Figures {
            outcome: Some("success".into()),
            housekeeping: None,
            housekeeping_ms: None,
        }
    );
    assert_eq!(
        env.repo(repo).await.size_bytes,
        None,
        "measured after the pass"
    );
    // the pass is owed in the mirror while it runs: a worker dying now leaves it due
    let owed = Retry::read(&mirror).expect("the running pass is remembered");
    assert_eq!((owed.kind, owed.failures), (RepackKind::Geometric, 0));
    // the lock is still held: a sync asked for now waits for the pass
    let next = env.enqueue(repo, SyncReason::Manual).await;
    throughout(
        "the next sync to wait for the pass",
        Duration::from_secs(2),
        || async { env.job(next).await.state == JobState::Pending },
    )
    .await;

    std::fs::remove_file(hold_file(&mirror)).unwrap();
    assert_eq!(env.finished(next, WAIT).await.state, JobState::Done);
    worker.stop().await;
    let landed = figures(&env, import).await;
    assert_eq!(landed.outcome.as_deref(), Some("success"));
    assert_eq!(landed.housekeeping.as_deref(), Some("geometric"));
    assert!(landed.housekeeping_ms.is_some());
    let size = env.repo(repo).await.size_bytes.expect("size recorded");
    let on_disk = stasis_worker::git::storage::disk_size(&mirror);
    assert_eq!(size as u64, on_disk);
    assert_eq!(Retry::read(&mirror), None, "no pass owed once done");
    assert!(mirror.join("objects/info/commit-graphs").is_dir());
    assert_eq!(env.repo(repo).await.sync_status, SyncStatus::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_that_fails_after_the_success_is_remembered_and_the_success_stands() {
    let Held {
        env,
        up,
        repo,
        mirror,
        worker,
        import,
    } = import_held().await;

    // git cannot take the multi-pack index's lock: the pass fails once let go
    std::fs::write(mirror.join("objects/pack/multi-pack-index.lock"), "").unwrap();
    std::fs::remove_file(hold_file(&mirror)).unwrap();
    env.released(repo, WAIT).await;
    worker.stop().await;

    assert_eq!(
        figures(&env, import).await,
        Figures {
            outcome: Some("success".into()),
            housekeeping: None,
            housekeeping_ms: None,
        }
    );
    let failed = Retry::read(&mirror).expect("the failed pass is remembered");
    assert_eq!((failed.kind, failed.failures), (RepackKind::Geometric, 1));
    let mirror_row = env.repo(repo).await;
    assert_eq!(mirror_row.sync_status, SyncStatus::Success);
    assert_eq!(mirror_row.sync_error, None);
    assert!(
        mirror_row.size_bytes.is_some(),
        "measured after the failed pass"
    );
    assert_mirrors(&mirror, &up);
}
