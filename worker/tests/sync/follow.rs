//! A mirror follows its upstream: every kind of ref change arrives, and an upstream with
//! nothing new costs one ref listing.

use stasis_shared::db::runs::Run;
use stasis_shared::domain::{JobState, RunOutcome, SyncReason, SyncStatus};
use stasis_testkit::git::{assert_mirrors, git, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;

use crate::WAIT;

/// Refs stored as loose files under `refs/`: the ones a no-op sync reads one by one.
fn loose_refs(mirror: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![mirror.join("refs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read refs dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_copies_every_ref_packed_and_schedules_the_next_sync() {
    let env = TestEnv::new().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    up.commit("second");
    git(&up.path, &["branch", "feature"]);
    git(&up.path, &["tag", "v1"]);
    git(&up.path, &["tag", "-a", "v1-annotated", "-m", "annotated"]);
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "up", &up.url()).await;
    let worker = env.spawn_worker();

    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    let mirror = env.mirror_path("alice", "up");
    assert_mirrors(&mirror, &up);
    assert_eq!(
        loose_refs(&mirror),
        Vec::<String>::new(),
        "import packs refs"
    );
    let synced = env.repo(repo).await;
    assert_eq!(synced.sync_status, SyncStatus::Success);
    assert!(synced.sync_error.is_none());
    assert!(synced.last_synced_at.is_some());
    assert!(synced.next_sync_at.expect("next sync scheduled") > chrono::Utc::now());
    assert_eq!(
        git(&mirror, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_follows_force_pushes_deletions_new_tags_and_a_new_default_branch() {
    let env = TestEnv::new().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let first = up.commit("second");
    git(&up.path, &["branch", "feature"]);
    git(&up.path, &["branch", "rewritten"]);
    git(&up.path, &["tag", "v1"]);
    git(&up.path, &["tag", "-a", "v1-annotated", "-m", "annotated"]);
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "up", &up.url()).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    let mirror = env.mirror_path("alice", "up");

    // new commits, a non-fast-forward rewrite, deletions, a new tag, a new default branch
    up.commit("third");
    git(&up.path, &["checkout", "-q", "-b", "trunk", &first]);
    up.commit("diverged");
    git(&up.path, &["branch", "-f", "rewritten", "HEAD"]);
    git(&up.path, &["branch", "-D", "feature"]);
    git(&up.path, &["tag", "-d", "v1"]);
    git(&up.path, &["tag", "v2"]);
    let manual = env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.finished(manual, WAIT).await.state, JobState::Done);
    assert_mirrors(&mirror, &up);
    assert_eq!(
        loose_refs(&mirror),
        Vec::<String>::new(),
        "a fetch packs refs"
    );
    assert_eq!(
        git(&mirror, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/trunk"
    );
    let runs = env.runs(manual).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Some(RunOutcome::Success));
    assert_eq!(runs[0].refs_pruned, 2, "feature and v1 pruned");
    assert!(
        runs[0].refs_updated >= 4,
        "main, rewritten, trunk, v2: {runs:?}"
    );

    // nothing new upstream: still a success, counted in the manual sync's run
    let noop = env.enqueue(repo, SyncReason::Scheduled).await;
    assert_eq!(env.finished(noop, WAIT).await.state, JobState::Done);
    let checked = &env.runs(noop).await[0];
    assert_eq!((checked.id, checked.checks), (runs[0].id, 2), "{checked:?}");
    assert_eq!(checked.outcome, Some(RunOutcome::Success));
    worker.stop().await;
}

/// A mirror of `up`, served by `git daemon` behind a proxy that counts connections, and
/// imported through a worker that keeps running.
struct Counted {
    up: Upstream,
    proxy: ThrottledProxy,
    _daemon: GitDaemon,
    repo: uuid::Uuid,
}

async fn imported_behind_a_counting_proxy(env: &TestEnv) -> (Counted, Run) {
    let served = env.dir.path().join("served");
    let up = Upstream::create(served.join("up"));
    git(&up.path, &["branch", "feature"]);
    git(&up.path, &["tag", "-a", "v1", "-m", "annotated"]);
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 50_000_000).await;
    let (owner, _) = env.user("olga", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    let import = sync(env, repo, SyncReason::Import).await;
    let counted = Counted {
        up,
        proxy,
        _daemon: daemon,
        repo,
    };
    (counted, import)
}

async fn sync(env: &TestEnv, repo: uuid::Uuid, reason: SyncReason) -> Run {
    let job = env.enqueue(repo, reason).await;
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    env.runs(job).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_upstream_is_one_ref_listing_on_one_connection() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let (m, import) = imported_behind_a_counting_proxy(&env).await;
    assert!(!import.unchanged && import.bytes_received > 0, "{import:?}");
    // main, feature and v1 are new; their objects came with the pack; both steps timed
    assert_eq!(import.refs_created, 3, "{import:?}");
    assert!(import.objects_received >= 3, "{import:?}");
    assert!(
        import.list_ms.is_some() && import.fetch_ms.is_some(),
        "{import:?}"
    );
    assert_mirrors(&env.mirror_path("olga", "up"), &m.up);

    let before = m.proxy.connections();
    // nothing new: the check is counted in the import's run, which keeps its figures
    let noop = sync(&env, m.repo, SyncReason::Scheduled).await;
    assert_eq!((noop.id, noop.checks), (import.id, 2), "{noop:?}");
    assert_eq!(noop.outcome, Some(RunOutcome::Success));
    assert_eq!(
        (noop.bytes_received, noop.refs_created, noop.fetch_ms),
        (import.bytes_received, import.refs_created, import.fetch_ms)
    );
    assert_eq!(
        m.proxy.connections() - before,
        1,
        "one ref advertisement, no fetch"
    );
    assert_eq!(env.repo(m.repo).await.sync_status, SyncStatus::Success);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_branch_a_moved_tag_and_a_new_commit_each_fetch() {
    let env = TestEnv::new().await;
    let worker = env.spawn_worker();
    let (mut m, _) = imported_behind_a_counting_proxy(&env).await;
    let mirror = env.mirror_path("olga", "up");

    git(&m.up.path, &["branch", "-D", "feature"]);
    let deleted = sync(&env, m.repo, SyncReason::Manual).await;
    assert!(
        !deleted.unchanged && deleted.refs_pruned == 1,
        "{deleted:?}"
    );
    assert_mirrors(&mirror, &m.up);

    m.up.commit("tag moves");
    git(&m.up.path, &["tag", "-f", "-a", "v1", "-m", "moved"]);
    let moved = sync(&env, m.repo, SyncReason::Manual).await;
    assert!(!moved.unchanged && moved.refs_updated >= 2, "{moved:?}");
    assert_eq!(
        moved.refs_created, 0,
        "main and v1 moved, nothing new: {moved:?}"
    );
    assert_mirrors(&mirror, &m.up);

    let again = sync(&env, m.repo, SyncReason::Scheduled).await;
    assert_eq!((again.id, again.checks), (moved.id, 2), "{again:?}");
    worker.stop().await;
}
