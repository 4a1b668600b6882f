//! Selective sync: a mirror keeps only the refs its patterns select, and changes outside
//! the selection are no change at all.

use std::collections::BTreeMap;

use stasis_shared::db::repos::{self, MirrorSettings};
use stasis_shared::db::runs::Run;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{git, refs, Upstream};
use stasis_testkit::TestEnv;
use uuid::Uuid;

use crate::WAIT;

/// An upstream with refs inside and outside the selection `refs/heads/main`,
/// `refs/heads/release/*`, `refs/tags/*` minus `refs/tags/v1-rc*`, and its mirror.
async fn selective_mirror(env: &TestEnv) -> (Upstream, Uuid) {
    let up = Upstream::create(env.dir.path().join("up"));
    for branch in ["release/1.0", "release/2.0", "feature"] {
        git(&up.path, &["branch", branch]);
    }
    git(&up.path, &["tag", "-a", "v1", "-m", "release"]);
    git(&up.path, &["tag", "v1-rc1"]);
    git(&up.path, &["update-ref", "refs/pull/1/head", "HEAD"]);
    let (owner, _) = env.user("kim", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    repos::update_mirror(
        &env.pool,
        repo,
        &MirrorSettings {
            include_refs: Some(vec![
                "refs/heads/main".into(),
                "refs/heads/release/*".into(),
                "refs/tags/*".into(),
            ]),
            exclude_refs: Some(vec!["refs/tags/v1-rc*".into()]),
            ..Default::default()
        },
        env.cfg.mirror.sync_interval,
    )
    .await
    .unwrap();
    (up, repo)
}

fn selected(all: BTreeMap<String, String>) -> Vec<String> {
    all.into_keys().filter(|r| r.starts_with("refs/")).collect()
}

async fn sync(env: &TestEnv, repo: Uuid, reason: SyncReason) -> Run {
    let job = env.enqueue(repo, reason).await;
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    env.runs(job).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_keeps_only_the_selected_refs() {
    let env = TestEnv::new().await;
    let (_up, repo) = selective_mirror(&env).await;
    let worker = env.spawn_worker();

    sync(&env, repo, SyncReason::Import).await;
    assert_eq!(
        selected(refs(&env.mirror_path("kim", "up"))),
        [
            "refs/heads/main",
            "refs/heads/release/1.0",
            "refs/heads/release/2.0",
            "refs/tags/v1"
        ]
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_outside_the_selection_are_no_change() {
    let env = TestEnv::new().await;
    let (up, repo) = selective_mirror(&env).await;
    let worker = env.spawn_worker();
    let import = sync(&env, repo, SyncReason::Import).await;

    git(&up.path, &["update-ref", "refs/pull/2/head", "HEAD"]);
    git(&up.path, &["branch", "-D", "feature"]);
    // nothing new: counted in the import's run
    let check = sync(&env, repo, SyncReason::Scheduled).await;
    assert_eq!((check.id, check.checks), (import.id, 2), "{check:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inside_the_selection_deletions_prune_and_new_and_moved_refs_are_fetched() {
    let env = TestEnv::new().await;
    let (mut up, repo) = selective_mirror(&env).await;
    let worker = env.spawn_worker();
    sync(&env, repo, SyncReason::Import).await;

    git(&up.path, &["branch", "-D", "release/1.0"]);
    git(&up.path, &["branch", "release/3.0"]);
    let moved_to = up.commit("main moves");
    let run = sync(&env, repo, SyncReason::Manual).await;
    assert!(!run.unchanged);
    assert_eq!((run.refs_pruned, run.refs_created), (1, 1), "{run:?}");
    let refs = refs(&env.mirror_path("kim", "up"));
    assert_eq!(refs["refs/heads/main"], moved_to);
    assert_eq!(
        selected(refs),
        [
            "refs/heads/main",
            "refs/heads/release/2.0",
            "refs/heads/release/3.0",
            "refs/tags/v1"
        ]
    );
    worker.stop().await;
}
