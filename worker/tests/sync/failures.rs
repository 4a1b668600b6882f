//! Failed syncs: transient errors are retried with backoff, permanent ones fail at once,
//! and no error shows the upstream's credentials.

use stasis_shared::domain::{ErrorKind, JobState, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::git::{free_port, GitDaemon};
use stasis_testkit::TestEnv;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_upstream_retries_with_backoff_then_fails_without_leaking_credentials() {
    let env = TestEnv::new().await;
    let (bob, _) = env.user("bob", false).await;
    let url = format!("http://bob:hunter2@127.0.0.1:{}/gone.git", free_port());
    let repo = env.mirror(&bob, "gone", &url).await;
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Failed);
    assert_eq!(finished.attempts, 3);
    let runs = env.runs(job).await;
    let outcomes: Vec<_> = runs
        .iter()
        .map(|r| r.outcome.map_or("open", RunOutcome::as_str))
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "failed"]);
    assert!(
        runs.iter()
            .all(|r| r.error_kind == Some(ErrorKind::Network)),
        "{runs:?}"
    );
    // backoff: each retry started after the previous attempt ended plus the base delay
    for pair in runs.windows(2) {
        let gap = pair[1].started_at - pair[0].finished_at.expect("finished");
        assert!(
            gap >= chrono::Duration::milliseconds(950),
            "retry came before its backoff: {gap}"
        );
    }

    let repo = env.repo(repo).await;
    assert_eq!(repo.sync_status, SyncStatus::Failed);
    let error = repo.sync_error.expect("error recorded");
    assert!(!error.is_empty());
    for text in runs
        .iter()
        .filter_map(|r| r.error.as_deref())
        .chain([error.as_str()])
    {
        assert!(!text.contains("hunter2"), "credential leaked: {text}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permanent_errors_fail_at_once() {
    let env = TestEnv::new().await;
    std::fs::create_dir_all(env.dir.path().join("served")).unwrap();
    let daemon = GitDaemon::start(&env.dir.path().join("served"));
    let (carol, _) = env.user("carol", false).await;
    let missing_on_daemon = env
        .mirror(&carol, "missing", &daemon.url("missing.git"))
        .await;
    let missing_path = env
        .mirror(&carol, "nopath", "file:///nonexistent/stasis/repo.git")
        .await;
    let worker = env.spawn_worker();

    for repo in [missing_on_daemon, missing_path] {
        let job = env.enqueue(repo, SyncReason::Manual).await;
        let finished = env.finished(job, WAIT).await;
        assert_eq!(finished.state, JobState::Failed);
        assert_eq!(finished.attempts, 1, "permanent errors are not retried");
        let runs = env.runs(job).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].error_kind, Some(ErrorKind::NotFound), "{runs:?}");
        let repo = env.repo(repo).await;
        assert_eq!(
            repo.sync_status,
            SyncStatus::HardFailed,
            "not retried on a timer either"
        );
        assert_eq!(repo.next_sync_at, None);
    }
    worker.stop().await;
}
