//! A long fetch's progress as its readers get it (the API's status, `stasisctl`): moving
//! while the pack arrives through a throttled loopback link, gone once the sync ends.

use std::time::Duration;

use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::progress::{self, Phase};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_import_reports_objects_and_bytes_moving_then_nothing_once_done() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    // 3 MB in 150 objects at 400 kB/s: about 7 s of download, counted object by object
    up.add_blobs("data", 150, 20_000);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 400_000).await;
    let (owner, _) = env.user("erin", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    let worker = env.spawn_worker();
    let job = env.enqueue(repo, SyncReason::Import).await;
    let namespace = &env.cfg.queue.namespace;

    let first = eventually("the progress to show received objects", WAIT, || async {
        progress::read(&env.redis, namespace, repo, job)
            .await
            .unwrap()
            .filter(|p| p.received_objects > 0)
    })
    .await;
    // published about once a second
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = progress::read(&env.redis, namespace, repo, job)
        .await
        .unwrap()
        .expect("the progress while the download still runs");
    assert_eq!(first.phase, Phase::ReceivingObjects, "{first:?}");
    assert!(first.total_objects > 150, "{first:?}");
    assert!(
        second.received_objects > first.received_objects,
        "{first:?} then {second:?}"
    );
    assert!(
        second.received_bytes > first.received_bytes,
        "{first:?} then {second:?}"
    );
    assert!(
        second.updated_at > first.updated_at,
        "{first:?} then {second:?}"
    );
    assert!(
        second.received_objects <= second.total_objects,
        "{second:?}"
    );

    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, JobState::Done);
    assert_eq!(
        progress::read(&env.redis, namespace, repo, job)
            .await
            .unwrap(),
        None
    );
    // the key itself is gone, not only out of this job's sight
    let stored: Option<String> = redis::cmd("GET")
        .arg(progress::key(namespace, repo))
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    assert_eq!(stored, None);
    assert_mirrors(&env.mirror_path("erin", "up"), &up);
    worker.stop().await;
}
