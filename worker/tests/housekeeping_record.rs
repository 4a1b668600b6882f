//! Through the queue: a sync that wrote records its repack on its run and the mirror's
//! size on its row, once its housekeeping ends (after its status turned `success`).
//!
//! On a multi-thread runtime like every in-process worker test: on a current-thread
//! one, the environment's teardown waited for a pool connection that a worker task still
//! held, and that task could not run while teardown blocked the runtime's only thread.

use std::time::Duration;

use stasis_shared::domain::JobState;
use stasis_testkit::git::Upstream;

/// Through the queue: the run records its repack, the mirror its size; a no-op sync
/// records neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_that_wrote_records_its_housekeeping_and_the_mirror_size() {
    use stasis_shared::domain::SyncReason;
    let env = stasis_testkit::TestEnv::new().await;
    let up = Upstream::create(env.dir.path().join("up"));
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "up", &up.url()).await;
    let worker = env.spawn_worker();
    let wait = Duration::from_secs(60);
    let recorded = |job| {
        sqlx::query_as::<_, (Option<String>, Option<i32>)>(
            "SELECT housekeeping, housekeeping_ms FROM sync_runs WHERE job_id = $1",
        )
        .bind(job)
        .fetch_one(&env.pool)
    };
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, wait).await.state, JobState::Done);
    // the pass may still run once the job is done; its sync ends when the lock is free
    env.released(repo, wait).await;
    let (kind, ms) = recorded(import).await.unwrap();
    assert_eq!(kind.as_deref(), Some("geometric"));
    assert!(ms.is_some());
    let size = env.repo(repo).await.size_bytes.expect("size recorded");
    let on_disk = stasis_worker::git::storage::disk_size(&env.mirror_path("alice", "up"));
    assert_eq!(size as u64, on_disk);

    let noop = env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.finished(noop, wait).await.state, JobState::Done);
    worker.stop().await;
    // the no-op only listed: counted in the import's run, no pass of its own
    let run = &env.runs(noop).await[0];
    assert_eq!((run.job_id, run.checks), (import, 2), "{run:?}");
    assert_eq!(recorded(import).await.unwrap(), (kind, ms));
}
