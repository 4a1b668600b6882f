//! Workers scaled out without Docker: several `stasis-worker` processes on one Redis and
//! Postgres share a burst of syncs (each takes some), every job runs exactly once even
//! with its delivery duplicated, and no worker runs more than its concurrency at once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stasis_shared::db::workers;
use stasis_shared::domain::{JobState, RunOutcome, SyncMirror, SyncReason};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};

const WORKERS: usize = 3;
const CONCURRENCY: usize = 2;
const MIRRORS: usize = 18;
const WAIT: Duration = Duration::from_secs(120);

/// When a run started and finished.
type Span = (DateTime<Utc>, DateTime<Utc>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_load_and_never_run_a_job_twice() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut ups = Vec::new();
    for i in 0..MIRRORS {
        let mut up = Upstream::create(served.join(format!("m{i}")));
        up.add_blob("payload.bin", 150_000);
        ups.push(up);
    }
    let daemon = GitDaemon::start(&served);
    // a few hundred ms per fetch, so a burst outlasts one worker's slots
    let proxy = ThrottledProxy::start(daemon.port, 500_000).await;
    let (owner, _) = env.user("fleet", false).await;
    let mut repos = Vec::new();
    for i in 0..MIRRORS {
        repos.push(
            env.mirror(&owner, &format!("m{i}"), &proxy.url(&format!("m{i}")))
                .await,
        );
    }

    let concurrency = [("STASIS_WORKER_CONCURRENCY", CONCURRENCY.to_string())];
    let mut fleet: Vec<Proc> = (0..WORKERS)
        .map(|i| {
            Proc::spawn(
                &env,
                "stasis-worker",
                &format!("worker{i}.log"),
                &concurrency,
            )
        })
        .collect();
    eventually("every worker to register", WAIT, || async {
        let alive = workers::alive(&env.pool, Duration::from_secs(30))
            .await
            .ok()?;
        (alive.len() == WORKERS).then_some(())
    })
    .await;

    let mut jobs = Vec::new();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Scheduled).await);
    }
    // at-least-once delivery, simulated: every job delivered a second time
    let duplicates = jobs
        .iter()
        .zip(&repos)
        .map(|(&job_id, &repo_id)| SyncMirror {
            job_id,
            repo_id,
            reason: SyncReason::Scheduled,
        })
        .collect();
    env.enqueuer().push(duplicates).await.unwrap();

    let mut runs_by_worker: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for &job in &jobs {
        assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    }
    // every duplicate delivered and acknowledged: from here on none can still run, so
    // each one that was going to run has
    env.drained(WAIT).await;
    for &job in &jobs {
        let runs = env.runs(job).await;
        assert_eq!(runs.len(), 1, "job {job} ran more than once: {runs:?}");
        assert_eq!(runs[0].outcome, Some(RunOutcome::Success), "{runs:?}");
        let run = &runs[0];
        runs_by_worker
            .entry(run.worker.clone())
            .or_default()
            .push((run.started_at, run.finished_at.expect("finished")));
    }

    assert_eq!(
        runs_by_worker.len(),
        WORKERS,
        "some worker took no job: {:?}",
        runs_by_worker
            .iter()
            .map(|(w, r)| (w, r.len()))
            .collect::<Vec<_>>()
    );
    for (worker, runs) in &runs_by_worker {
        let most = max_overlap(runs);
        assert!(
            most <= CONCURRENCY,
            "{worker} ran {most} syncs at once, above its concurrency {CONCURRENCY}"
        );
    }
    for (i, up) in ups.iter().enumerate() {
        assert_mirrors(&env.mirror_path("fleet", &format!("m{i}")), up);
    }
    for (i, w) in fleet.iter_mut().enumerate() {
        w.assert_running(&format!("worker {i}"));
    }
}

/// The most intervals open at one instant.
fn max_overlap(runs: &[Span]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = runs
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // an end and a start at the same instant do not overlap
    edges.sort_by_key(|&(at, delta)| (at, delta));
    let (mut open, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    most as usize
}
