//! Unchanged syncs in a row share one history row: the run of the first counts them
//! all (`checks`) and says when the latest began (`last_checked_at`); a sync that
//! changed something or failed writes a row of its own, and the next unchanged one
//! starts counting again. A check that lists for long shows its own running row until
//! it ends.

use stasis_shared::db::runs::{self, Run};
use stasis_shared::domain::{JobState, RunOutcome, SyncReason};
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

use crate::{set_upstream, WAIT};

const OK: Option<RunOutcome> = Some(RunOutcome::Success);

/// A mirror of `up` served by `git daemon`, imported.
struct Served {
    up: Upstream,
    daemon: GitDaemon,
    repo: Uuid,
}

async fn imported(env: &TestEnv) -> Served {
    let served = env.dir.path().join("served");
    let up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("fay", false).await;
    let repo = env.mirror(&owner, "up", &daemon.url("up")).await;
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    Served { up, daemon, repo }
}

/// A scheduled sync of `repo`, run to its end: its job.
async fn sync(env: &TestEnv, repo: Uuid, ends: JobState) -> Uuid {
    let job = env.enqueue(repo, SyncReason::Scheduled).await;
    assert_eq!(env.finished(job, WAIT).await.state, ends);
    job
}

async fn history(env: &TestEnv, repo: Uuid) -> Vec<Run> {
    runs::for_repo(&env.pool, repo, 100).await.unwrap()
}

/// Each run's outcome, whether it was unchanged and the checks it stands for, newest
/// first.
fn shape(history: &[Run]) -> Vec<(Option<RunOutcome>, bool, i32)> {
    history
        .iter()
        .map(|r| (r.outcome, r.unchanged, r.checks))
        .collect()
}

async fn job_exists(env: &TestEnv, job: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE id = $1)")
        .bind(job)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_unchanged_syncs_in_a_row_leave_one_run_of_three_checks() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;

    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(sync(&env, m.repo, JobState::Done).await);
    }
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 3), (OK, false, 1)],
        "{history:?}"
    );
    let (folded, third) = (&history[0], env.job(jobs[2]).await);
    assert_eq!(folded.job_id, jobs[0], "the run is the first check's");
    assert_eq!(Some(folded.last_checked_at), third.started_at);
    assert_eq!(Some(&folded.worker), third.worker.as_ref());
    assert!(folded.last_checked_at > folded.started_at, "{folded:?}");
    assert!(
        folded.duration_ms.is_some() && folded.list_ms.is_some(),
        "the latest check's times: {folded:?}"
    );
    // the middle check's job is gone; the first's and the latest's show the run
    assert!(!job_exists(&env, jobs[1]).await);
    for job in [jobs[0], jobs[2]] {
        let shown: Vec<i64> = env.runs(job).await.iter().map(|r| r.id).collect();
        assert_eq!(shown, vec![folded.id], "job {job}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_that_changed_something_starts_a_new_run_and_so_does_the_next_unchanged_one() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let mut m = imported(&env).await;

    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    m.up.commit("more");
    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 2), (OK, false, 1), (OK, true, 2), (OK, false, 1)],
        "{history:?}"
    );
    assert!(history[1].refs_updated > 0, "{history:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sync_starts_a_new_run_and_so_does_the_next_unchanged_one() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;

    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    set_upstream(&env, m.repo, &m.daemon.url("missing.git")).await;
    sync(&env, m.repo, JobState::Failed).await;
    set_upstream(&env, m.repo, &m.daemon.url("up")).await;
    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![
            (OK, true, 2),
            (Some(RunOutcome::Failed), false, 1),
            (OK, true, 2),
            (OK, false, 1)
        ],
        "{history:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_unchanged_check_shows_its_own_running_run_then_folds_into_the_one_before() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;
    sync(&env, m.repo, JobState::Done).await;

    // a listing slower than the grace before recording: the check is recorded as
    // started, and the history shows it running above the unchanged run
    let slow = ThrottledProxy::start(m.daemon.port, 200).await;
    set_upstream(&env, m.repo, &slow.url("up")).await;
    let job = env.enqueue(m.repo, SyncReason::Scheduled).await;
    let running = eventually("the slow check shown running", WAIT, || async {
        let history = history(&env, m.repo).await;
        (history[0].finished_at.is_none()).then_some(history)
    })
    .await;
    assert_eq!(running[0].job_id, job);
    assert_eq!(
        shape(&running),
        vec![(None, false, 1), (OK, true, 1), (OK, false, 1)]
    );
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 2), (OK, false, 1)],
        "its run folded in: {history:?}"
    );
    assert!(
        history[0].list_ms.unwrap_or(0) >= 500,
        "the latest listing's time: {history:?}"
    );
    assert_eq!(env.runs(job).await[0].id, history[0].id);
    worker.stop().await;
}
