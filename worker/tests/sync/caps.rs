//! Fleet-wide caps on syncs at once: per upstream host (`sync.max_per_host`) and in all
//! (`sync.max_concurrent`), held by every worker together.

use chrono::{DateTime, Utc};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::WAIT;

/// When a run started and finished.
type Span = (DateTime<Utc>, DateTime<Utc>);

async fn span(env: &TestEnv, job: Uuid) -> Span {
    let run = env.runs(job).await.pop().expect("a run");
    (run.started_at, run.finished_at.expect("finished"))
}

/// The most spans open at one instant; one ending as another starts is no overlap.
fn max_overlap(spans: &[Span]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = spans
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        open += delta;
        most = most.max(open);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syncs_from_one_host_stay_under_its_cap_while_other_hosts_proceed() {
    let mut env = TestEnv::new().await;
    env.cfg.sync.max_per_host = 1;
    let served = env.dir.path().join("served");
    for name in ["a0", "a1", "a2", "b0"] {
        Upstream::create(served.join(name)).add_blob("payload.bin", 400_000);
    }
    let daemon = GitDaemon::start(&served);
    // two upstream hosts (two loopback addresses), each fetch ~0.8 s
    let host_a = ThrottledProxy::start_at([127, 0, 0, 1], daemon.port, 500_000).await;
    let host_b = ThrottledProxy::start_at([127, 0, 0, 2], daemon.port, 500_000).await;
    let (owner, _) = env.user("hana", false).await;
    let mut on_a = Vec::new();
    for name in ["a0", "a1", "a2"] {
        on_a.push(env.mirror(&owner, name, &host_a.url(name)).await);
    }
    let on_b = env.mirror(&owner, "b0", &host_b.url("b0")).await;
    let worker = env.spawn_worker(); // concurrency 4: only the cap holds host A back

    let mut jobs_a = Vec::new();
    for &repo in &on_a {
        jobs_a.push(env.enqueue(repo, SyncReason::Import).await);
    }
    let job_b = env.enqueue(on_b, SyncReason::Import).await;
    let b = env.finished(job_b, WAIT).await;
    let mut last_a = None;
    for &job in &jobs_a {
        let done = env.finished(job, WAIT).await;
        assert_eq!(done.state, JobState::Done);
        last_a = last_a.max(done.finished_at);
    }
    assert_eq!(b.state, JobState::Done);
    // the runs hold the slot from start to finish: on host A they follow one another
    let mut spans = Vec::new();
    for &job in &jobs_a {
        spans.push(span(&env, job).await);
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "host A's cap of 1 was exceeded: {spans:?}"
        );
    }
    assert!(
        b.finished_at < last_a,
        "host B waited behind host A's queue"
    );
    for name in ["a0", "a1", "a2", "b0"] {
        assert!(
            env.mirror_path("hana", name).exists(),
            "{name} not mirrored"
        );
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_together_never_run_more_syncs_at_once_than_the_fleet_cap() {
    const CAP: usize = 2;
    // more than one worker takes into flight at once (twice its concurrency), so both
    // workers hold deliveries
    const MIRRORS: usize = 12;
    let mut env = TestEnv::new().await;
    env.cfg.sync.max_concurrent = CAP as u32;
    // two workers of three permits each: six syncs could run at once without the cap
    env.cfg.worker.concurrency = 3;
    let served = env.dir.path().join("served");
    for i in 0..MIRRORS {
        Upstream::create(served.join(format!("m{i}"))).add_blob("payload.bin", 400_000);
    }
    let daemon = GitDaemon::start(&served);
    // ~0.8 s per fetch, so the burst overlaps unless something holds it back
    let proxy = ThrottledProxy::start(daemon.port, 500_000).await;
    let (owner, _) = env.user("fay", false).await;
    let mut repos = Vec::new();
    for i in 0..MIRRORS {
        let name = format!("m{i}");
        repos.push(env.mirror(&owner, &name, &proxy.url(&name)).await);
    }
    let first = env.spawn_worker();
    let second = env.spawn_worker();

    let mut jobs = Vec::new();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Import).await);
    }
    let mut spans = Vec::new();
    for &job in &jobs {
        assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
        spans.push(span(&env, job).await);
    }
    // the slot is held from before a run starts until after it is recorded
    let most = max_overlap(&spans);
    assert!(
        most <= CAP,
        "{most} syncs ran at once, above sync.max_concurrent = {CAP}: {spans:?}"
    );
    assert!(
        proxy.max_concurrent() <= CAP,
        "{} upstream connections at once, above the cap of {CAP}",
        proxy.max_concurrent()
    );
    // the burst did press against the cap: it bound, it was not merely never reached
    assert_eq!(most, CAP, "{spans:?}");
    for i in 0..MIRRORS {
        assert!(
            env.mirror_path("fay", &format!("m{i}")).exists(),
            "m{i} not mirrored"
        );
    }
    first.stop().await;
    second.stop().await;
}
