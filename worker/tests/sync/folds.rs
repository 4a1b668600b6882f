//! Unchanged syncs after a successful one share its history row: the run counts them
//! (`checks`) and says when the latest began (`last_checked_at`); a sync that changed
//! something or failed writes a row of its own, so the history holds a row a change,
//! and no done job once the next run is written (a failed one stays). A check that lists
//! for long shows its own running row until it ends.

use stasis_shared::db::runs::{self, Run};
use stasis_shared::domain::{JobState, RunOutcome, SyncReason};
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

use crate::{set_upstream, WAIT};

const OK: Option<RunOutcome> = Some(RunOutcome::Success);
const FAILED: Option<RunOutcome> = Some(RunOutcome::Failed);

/// A mirror of `up` served by `git daemon`, imported.
struct Served {
    up: Upstream,
    daemon: GitDaemon,
    repo: Uuid,
    /// The import's job.
    import: Uuid,
}

/// A mirror of `up` served by `git daemon`, imported.
async fn imported(env: &TestEnv) -> Served {
    let served = env.dir.path().join("served");
    let up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("fay", false).await;
    let repo = env.mirror(&owner, "up", &daemon.url("up")).await;
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    Served {
        up,
        daemon,
        repo,
        import,
    }
}

/// The mirror's sync fails for good once (its upstream gone), then it is served again.
async fn fail_once(env: &TestEnv, m: &Served) -> Uuid {
    set_upstream(env, m.repo, &m.daemon.url("missing.git")).await;
    let failed = sync(env, m.repo, JobState::Failed).await;
    set_upstream(env, m.repo, &m.daemon.url("up")).await;
    failed
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
async fn unchanged_syncs_after_a_change_fold_into_its_run_which_keeps_its_own_figures() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;
    let before = history(&env, m.repo).await;

    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(sync(&env, m.repo, JobState::Done).await);
    }
    let history = history(&env, m.repo).await;
    assert_eq!(shape(&history), vec![(OK, false, 4)], "{history:?}");
    let (run, import, third) = (&history[0], &before[0], env.job(jobs[2]).await);
    assert_eq!(run.id, import.id);
    assert_eq!(run.job_id, m.import, "the run is the import's");
    assert_eq!(Some(run.last_checked_at), third.started_at);
    assert!(run.last_checked_at > run.started_at, "{run:?}");
    assert!(run.refs_updated > 0 && run.bytes_received > 0, "{run:?}");
    assert_eq!(
        (&run.worker, run.list_ms, run.duration_ms, run.finished_at),
        (
            &import.worker,
            import.list_ms,
            import.duration_ms,
            import.finished_at
        ),
        "the import's own figures stay"
    );
    // the checks in between are gone; the import's job and the latest's show the run
    for job in &jobs[..2] {
        assert!(!job_exists(&env, *job).await, "job {job}");
    }
    for job in [m.import, jobs[2]] {
        let shown: Vec<i64> = env.runs(job).await.iter().map(|r| r.id).collect();
        assert_eq!(shown, vec![run.id], "job {job}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchanged_syncs_after_a_failure_start_a_run_that_takes_in_the_next_ones() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;
    fail_once(&env, &m).await;

    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(sync(&env, m.repo, JobState::Done).await);
    }
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 3), (FAILED, false, 1), (OK, false, 1)],
        "{history:?}"
    );
    let (folded, third) = (&history[0], env.job(jobs[2]).await);
    assert_eq!(folded.job_id, jobs[0], "the run is the first check's");
    assert_eq!(Some(folded.last_checked_at), third.started_at);
    assert_eq!(Some(&folded.worker), third.worker.as_ref());
    assert!(
        folded.duration_ms.is_some() && folded.list_ms.is_some(),
        "the latest check's times: {folded:?}"
    );
    assert!(!job_exists(&env, jobs[1]).await);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_starts_a_run_of_its_own_and_the_run_before_gives_up_its_done_jobs() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let mut m = imported(&env).await;

    sync(&env, m.repo, JobState::Done).await;
    let latest = sync(&env, m.repo, JobState::Done).await;
    m.up.commit("more");
    let change = sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    let newest = sync(&env, m.repo, JobState::Done).await;
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, false, 3), (OK, false, 3)],
        "{history:?}"
    );
    assert!(history[0].refs_updated > 0, "{history:?}");
    assert_eq!(history[0].job_id, change);
    // the import's run keeps its count and names its first job, but that job and its
    // latest check's went when the change's run was written
    assert_eq!(history[1].job_id, m.import);
    assert!(
        !job_exists(&env, m.import).await,
        "the import's job is gone"
    );
    assert!(
        !job_exists(&env, latest).await,
        "the latest check's job is gone"
    );
    // the latest run's first and latest jobs stay, done, for whoever opened them
    assert!(job_exists(&env, change).await);
    assert!(job_exists(&env, newest).await);
    let detail = runs::for_job(&env.pool, m.import).await.unwrap();
    assert_eq!(
        detail.len(),
        1,
        "the gone job's run is still found by its id"
    );
    assert_eq!(detail[0].checks, 3);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sync_starts_a_new_run_and_so_does_the_next_unchanged_one() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;

    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    let failed = fail_once(&env, &m).await;
    sync(&env, m.repo, JobState::Done).await;
    sync(&env, m.repo, JobState::Done).await;
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 2), (FAILED, false, 1), (OK, false, 3)],
        "{history:?}"
    );
    assert_eq!(history[1].job_id, failed);
    // a failed job stays for the operator to retry or discard; the done ones before
    // it went as the failure's run was written
    assert!(job_exists(&env, failed).await);
    assert!(!job_exists(&env, m.import).await);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_unchanged_check_shows_its_own_running_run_then_folds_into_the_one_before() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let m = imported(&env).await;
    fail_once(&env, &m).await;
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
        vec![
            (None, false, 1),
            (OK, true, 1),
            (FAILED, false, 1),
            (OK, false, 1)
        ]
    );
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    let history = history(&env, m.repo).await;
    assert_eq!(
        shape(&history),
        vec![(OK, true, 2), (FAILED, false, 1), (OK, false, 1)],
        "its run folded in: {history:?}"
    );
    assert!(
        history[0].list_ms.unwrap_or(0) >= 500,
        "the latest listing's time: {history:?}"
    );
    assert_eq!(env.runs(job).await[0].id, history[0].id);
    worker.stop().await;
}
