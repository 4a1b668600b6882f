//! Fleet-wide caps on syncs at once: per upstream host (`sync.max_per_host`), held by
//! every worker together.

use chrono::{DateTime, Utc};
use stasis_shared::domain::SyncReason;
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
        assert_eq!(done.state, "done");
        last_a = last_a.max(done.finished_at);
    }
    assert_eq!(b.state, "done");
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
