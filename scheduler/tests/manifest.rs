//! Upstream manifests against real servers on loopback: a mirror synced by a real worker
//! (which stores its refs' fingerprint), its upstream served by git http-backend, and
//! that upstream's grokmirror manifest served over HTTP. A round where nothing changed
//! costs one manifest request and no job; a change, a missing manifest or a mirror not
//! listed for a day is enqueued as without a manifest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stasis_scheduler::due::enqueue_due;
use stasis_scheduler::manifest::{ManifestRound, Manifests};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::Upstream;
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::manifest::{grok_fingerprint, ManifestServer, Served};
use stasis_testkit::TestEnv;
use uuid::Uuid;

struct Fleet {
    env: TestEnv,
    up: Upstream,
    _git: GitHttpServer,
    manifest: ManifestServer,
    repo: Uuid,
}

/// One mirror of a smart-HTTP upstream, imported by a real worker, due again, with its
/// host's manifest configured and published.
async fn fleet() -> Fleet {
    let mut env = TestEnv::new().await;
    let root = env.dir.path().join("upstreams");
    let up = Upstream::create(root.join("r.git"));
    let git = GitHttpServer::start(&root);
    let manifest = ManifestServer::start();
    env.cfg
        .mirror
        .manifests
        .insert("127.0.0.1".into(), manifest.url());
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "r", &git.url("r.git")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    let job = env.finished(import, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Done);
    worker.stop().await;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT refs_fingerprint FROM repositories WHERE id = $1")
            .bind(repo)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let upstream = grok_fingerprint(&up.path.join(".git"));
    assert!(upstream.is_some());
    assert_eq!(
        stored, upstream,
        "the worker stores grokmirror's fingerprint"
    );
    manifest.publish(&[("/r.git", &up.path.join(".git"))]);
    make_due(&env, repo).await;
    Fleet {
        env,
        up,
        _git: git,
        manifest,
        repo,
    }
}

async fn make_due(env: &TestEnv, repo: Uuid) {
    sqlx::query("UPDATE repositories SET next_sync_at = now() - interval '1 second' WHERE id = $1")
        .bind(repo)
        .execute(&env.pool)
        .await
        .unwrap();
}

/// One scheduler tick as the leader runs it: the manifest round, then the due mirrors.
async fn tick(env: &TestEnv, manifests: &mut Manifests) -> (ManifestRound, u64) {
    let round = manifests.round(&env.cfg, &env.pool).await.expect("round");
    let report = enqueue_due(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .expect("tick");
    (round, report.enqueued)
}

async fn schedule(
    env: &TestEnv,
    repo: Uuid,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64) {
    sqlx::query_as(
        "SELECT next_sync_at, last_synced_at,
                (SELECT count(*) FROM sync_jobs j WHERE j.repo_id = r.id AND j.reason = 'scheduled')
         FROM repositories r WHERE id = $1",
    )
    .bind(repo)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_upstream_costs_one_request_and_no_job() {
    let f = fleet().await;
    let (_, listed, _) = schedule(&f.env, f.repo).await;
    let mut manifests = Manifests::new(&f.env.cfg);
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.requests, round.skipped, enqueued), (1, 1, 0));
    let (next, last_listed, jobs) = schedule(&f.env, f.repo).await;
    assert_eq!(jobs, 0);
    assert!(next.unwrap() > Utc::now(), "moved on by an interval");
    assert_eq!(last_listed, listed, "a manifest is not a listing");
    let served = f.manifest.requests();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].status, 200);

    // the next tick asks conditionally and keeps what it read
    make_due(&f.env, f.repo).await;
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.skipped, enqueued), (1, 0));
    let served = f.manifest.requests();
    assert_eq!(served.len(), 2);
    assert!(served[1].if_modified_since.is_some(), "{served:?}");
    assert_eq!(served[1].status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_fingerprint_is_enqueued() {
    let mut f = fleet().await;
    let mut manifests = Manifests::new(&f.env.cfg);
    let (round, _) = tick(&f.env, &mut manifests).await;
    assert_eq!(round.skipped, 1);
    f.up.commit("upstream moved");
    f.manifest.publish(&[("/r.git", &f.up.path.join(".git"))]);
    make_due(&f.env, f.repo).await;
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.skipped, enqueued), (0, 1));
    assert_eq!(schedule(&f.env, f.repo).await.2, 1);
    // a new manifest was sent whole: the conditional request got a 200
    assert_eq!(f.manifest.requests().last().map(|s| s.status), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_manifest_falls_back_to_syncing() {
    let f = fleet().await;
    let mut manifests = Manifests::new(&f.env.cfg);
    tick(&f.env, &mut manifests).await;
    f.manifest.remove();
    make_due(&f.env, f.repo).await;
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.requests, round.skipped, enqueued), (1, 0, 1));
    let last = f.manifest.requests().last().cloned();
    assert!(matches!(last, Some(Served { status: 404, .. })), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_not_listed_for_a_day_is_synced_whatever_the_manifest_says() {
    let f = fleet().await;
    sqlx::query(
        "UPDATE repositories SET last_synced_at = now() - interval '25 hours' WHERE id = $1",
    )
    .bind(f.repo)
    .execute(&f.env.pool)
    .await
    .unwrap();
    let mut manifests = Manifests::new(&f.env.cfg);
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.skipped, enqueued), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_of_another_host_vouches_for_nothing() {
    let mut f = fleet().await;
    let url = f.manifest.url();
    f.env.cfg.mirror.manifests.clear();
    f.env
        .cfg
        .mirror
        .manifests
        .insert("git.example.org".into(), url);
    let mut manifests = Manifests::new(&f.env.cfg);
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.requests, round.skipped, enqueued), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_at_an_internal_address_is_not_read() {
    let mut f = fleet().await;
    // the manifest is on 127.0.0.1: under the production policy it is never asked for
    f.env.cfg.mirror.allow_local_network = false;
    let mut manifests = Manifests::new(&f.env.cfg);
    let (round, enqueued) = tick(&f.env, &mut manifests).await;
    assert_eq!((round.skipped, enqueued), (0, 1));
    assert!(
        f.manifest.requests().is_empty(),
        "{:?}",
        f.manifest.requests()
    );
}
