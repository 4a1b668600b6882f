//! The sync pipeline through real Postgres, Redis and loopback git upstreams, with
//! workers running in this process.

use std::time::Duration;

use stasis_shared::domain::{SyncMirror, SyncReason};
use stasis_shared::lock::Leases;
use stasis_testkit::git::{assert_mirrors, free_port, git, GitDaemon, Upstream};
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_follows_upstream_including_force_pushes_deletions_and_tags() {
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
    assert_eq!(env.finished(import, WAIT).await.state, "done");
    let mirror = env.mirror_path("alice", "up");
    assert_mirrors(&mirror, &up);
    assert_eq!(
        loose_refs(&mirror),
        Vec::<String>::new(),
        "import packs refs"
    );
    let synced = env.repo(repo).await;
    assert_eq!(synced.sync_status, "success");
    assert!(synced.sync_error.is_none());
    assert!(synced.last_synced_at.is_some());
    assert!(synced.next_sync_at.expect("next sync scheduled") > chrono::Utc::now());
    assert_eq!(
        git(&mirror, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );

    // new commits, a non-fast-forward rewrite, deletions, a new tag, a new default branch
    up.commit("third");
    git(&up.path, &["checkout", "-q", "-b", "trunk", &first]);
    up.commit("diverged");
    git(&up.path, &["branch", "-f", "rewritten", "HEAD"]);
    git(&up.path, &["branch", "-D", "feature"]);
    git(&up.path, &["tag", "-d", "v1"]);
    git(&up.path, &["tag", "v2"]);
    let manual = env.enqueue(repo, SyncReason::Manual).await;
    assert_eq!(env.finished(manual, WAIT).await.state, "done");
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
    assert_eq!(runs[0].outcome.as_deref(), Some("success"));
    assert_eq!(runs[0].refs_pruned, 2, "feature and v1 pruned");
    assert!(
        runs[0].refs_updated >= 4,
        "main, rewritten, trunk, v2: {runs:?}"
    );

    // nothing new upstream: still a success
    let noop = env.enqueue(repo, SyncReason::Scheduled).await;
    assert_eq!(env.finished(noop, WAIT).await.state, "done");
    assert_eq!(env.runs(noop).await[0].refs_updated, 0);
    worker.stop().await;
}

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
async fn an_unchanged_upstream_is_one_ref_listing_and_any_ref_change_fetches_on_the_same_connection(
) {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    git(&up.path, &["branch", "feature"]);
    git(&up.path, &["tag", "-a", "v1", "-m", "annotated"]);
    let daemon = GitDaemon::start(&served);
    // counts connections: an unchanged sync must open exactly one
    let proxy = ThrottledProxy::start(daemon.port, 50_000_000).await;
    let (owner, _) = env.user("olga", false).await;
    let repo = env.mirror(&owner, "up", &proxy.url("up")).await;
    let worker = env.spawn_worker();
    let env = &env;
    let sync = |reason| async move {
        let job = env.enqueue(repo, reason).await;
        assert_eq!(env.finished(job, WAIT).await.state, "done");
        env.runs(job).await.remove(0)
    };

    let import = sync(SyncReason::Import).await;
    assert!(!import.unchanged && import.bytes_received > 0, "{import:?}");
    // main, feature and v1 are new; their objects came with the pack; both steps timed
    assert_eq!(import.refs_created, 3, "{import:?}");
    assert!(import.objects_received >= 3, "{import:?}");
    assert!(
        import.list_ms.is_some() && import.fetch_ms.is_some(),
        "{import:?}"
    );
    let mirror = env.mirror_path("olga", "up");
    assert_mirrors(&mirror, &up);

    let before = proxy.connections();
    let noop = sync(SyncReason::Scheduled).await;
    assert!(noop.unchanged, "{noop:?}");
    assert_eq!(noop.outcome.as_deref(), Some("success"));
    assert_eq!((noop.bytes_received, noop.refs_updated), (0, 0));
    assert!(
        noop.list_ms.is_some() && noop.fetch_ms.is_none(),
        "{noop:?}"
    );
    assert_eq!(
        proxy.connections() - before,
        1,
        "one ref advertisement, no fetch"
    );
    assert_eq!(env.repo(repo).await.sync_status, "success");

    // a deleted branch, a moved tag, a new commit: each is a change that fetches
    git(&up.path, &["branch", "-D", "feature"]);
    let deleted = sync(SyncReason::Manual).await;
    assert!(
        !deleted.unchanged && deleted.refs_pruned == 1,
        "{deleted:?}"
    );
    assert_mirrors(&mirror, &up);

    up.commit("tag moves");
    git(&up.path, &["tag", "-f", "-a", "v1", "-m", "moved"]);
    let moved = sync(SyncReason::Manual).await;
    assert!(!moved.unchanged && moved.refs_updated >= 2, "{moved:?}");
    assert_eq!(
        moved.refs_created, 0,
        "main and v1 moved, nothing new: {moved:?}"
    );
    assert_mirrors(&mirror, &up);

    let again = sync(SyncReason::Scheduled).await;
    assert!(again.unchanged, "{again:?}");
    worker.stop().await;
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
        let run = env.runs(job).await.pop().expect("a run");
        spans.push((run.started_at, run.finished_at.expect("finished")));
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
async fn unreachable_upstream_retries_with_backoff_then_fails_without_leaking_credentials() {
    let env = TestEnv::new().await;
    let (bob, _) = env.user("bob", false).await;
    let url = format!("http://bob:hunter2@127.0.0.1:{}/gone.git", free_port());
    let repo = env.mirror(&bob, "gone", &url).await;
    let worker = env.spawn_worker();

    let job = env.enqueue(repo, SyncReason::Manual).await;
    let finished = env.finished(job, WAIT).await;
    assert_eq!(finished.state, "failed");
    assert_eq!(finished.attempts, 3);
    let runs = env.runs(job).await;
    let outcomes: Vec<_> = runs
        .iter()
        .map(|r| r.outcome.as_deref().unwrap_or("open"))
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "failed"]);
    assert!(
        runs.iter()
            .all(|r| r.error_kind.as_deref() == Some("network")),
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
    assert_eq!(repo.sync_status, "failed");
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
        assert_eq!(finished.state, "failed");
        assert_eq!(finished.attempts, 1, "permanent errors are not retried");
        let runs = env.runs(job).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].error_kind.as_deref(), Some("not_found"), "{runs:?}");
        let repo = env.repo(repo).await;
        assert_eq!(
            repo.sync_status, "hard_failed",
            "not retried on a timer either"
        );
        assert_eq!(repo.next_sync_at, None);
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_enqueues_and_deliveries_never_fetch_one_repository_twice_at_once() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    up.add_blob("big.bin", 1_200_000);
    let daemon = GitDaemon::start(&served);
    // ~2.4 s per fetch: long enough for duplicates to collide
    let proxy = ThrottledProxy::start(daemon.port, 500_000).await;
    let (dave, _) = env.user("dave", false).await;
    let repo = env.mirror(&dave, "up", &proxy.url("up")).await;

    // concurrent requests all get the same job
    let enqueuer = env.enqueuer();
    let requests = (0..20).map(|_| {
        let enqueuer = enqueuer.clone();
        async move {
            enqueuer
                .enqueue(repo, SyncReason::Manual)
                .await
                .unwrap()
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let job = results[0].job_id;
    assert!(results.iter().all(|r| r.job_id == job));
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);

    // and deliveries duplicated behind the dedup's back (as apalis's at-least-once
    // redelivery does) are serialised by the repository lock across two workers
    let duplicate = SyncMirror {
        job_id: job,
        repo_id: repo,
        reason: SyncReason::Manual,
    };
    enqueuer.push(vec![duplicate; 6]).await.unwrap();
    let first = env.spawn_worker();
    let second = env.spawn_worker();

    assert_eq!(env.finished(job, WAIT).await.state, "done");
    // let the remaining duplicates drain: they must all be dropped
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        proxy.max_concurrent(),
        1,
        "two fetches of one repository overlapped"
    );
    let runs = env.runs(job).await;
    assert_eq!(runs.len(), 1, "the job ran once: {runs:?}");
    assert_eq!(runs[0].outcome.as_deref(), Some("success"));
    assert_mirrors(&env.mirror_path("dave", "up"), &up);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_now_goes_ahead_of_a_scheduled_backlog() {
    let mut env = TestEnv::new().await;
    env.cfg.worker.concurrency = 1;
    let up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("ivan", false).await;
    const BACKLOG: usize = 120;
    for i in 0..BACKLOG {
        let repo = env.mirror(&owner, &format!("bulk{i}"), &up.url()).await;
        env.enqueue(repo, SyncReason::Scheduled).await;
    }
    let urgent = env.mirror(&owner, "urgent", &up.url()).await;

    let worker = env.spawn_worker();
    let manual = env.enqueue(urgent, SyncReason::Manual).await;
    assert_eq!(env.finished(manual, WAIT).await.state, "done");
    let scheduled_done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs WHERE reason = 'scheduled' AND state = 'done'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        (scheduled_done as usize) < BACKLOG / 4,
        "the manual sync waited for {scheduled_done} of {BACKLOG} scheduled syncs"
    );
    worker.stop().await;
}

/// Points the mirror at another upstream, behind the API's back.
async fn set_upstream(env: &TestEnv, repo: uuid::Uuid, url: &str) {
    sqlx::query("UPDATE repositories SET mirror_url = $1 WHERE id = $2")
        .bind(url)
        .bind(repo)
        .execute(&env.pool)
        .await
        .unwrap();
}

async fn schedule_of(env: &TestEnv, repo: uuid::Uuid) -> (f64, i32, Option<f64>) {
    sqlx::query_as(
        "SELECT interval_factor, consecutive_failures,
                EXTRACT(EPOCH FROM next_sync_at - now())::float8
         FROM repositories WHERE id = $1",
    )
    .bind(repo)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intervals_stretch_while_unchanged_and_repeated_failures_stop_the_schedule() {
    let mut env = TestEnv::new().await;
    env.cfg.mirror.sync_interval = Duration::from_secs(1000);
    env.cfg.mirror.max_sync_interval = Duration::from_secs(2000);
    env.cfg.mirror.hard_fail_after = 2;
    env.cfg.sync.max_attempts = 1;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let (owner, _) = env.user("judy", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    let worker = env.spawn_worker();
    let sync = |reason| {
        let env = &env;
        async move {
            let job = env.enqueue(repo, reason).await;
            env.finished(job, WAIT).await
        }
    };
    let near = |secs: Option<f64>, want: f64| {
        let secs = secs.expect("scheduled");
        assert!(
            (want * 0.85..=want * 1.15).contains(&secs),
            "next sync in {secs}s, not ~{want}s"
        );
    };

    // a change keeps the base interval; each unchanged sync stretches it by half, capped
    sync(SyncReason::Import).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 1.0);
    near(next, 1000.0);
    sync(SyncReason::Scheduled).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 1.5);
    near(next, 1500.0);
    for _ in 0..2 {
        sync(SyncReason::Scheduled).await;
    }
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(factor, 2.0, "capped at max_sync_interval / base");
    near(next, 2000.0);
    up.commit("news");
    sync(SyncReason::Scheduled).await;
    let (factor, _, next) = schedule_of(&env, repo).await;
    assert_eq!(
        factor, 1.0,
        "a change halves the stretch back toward the base"
    );
    near(next, 1000.0);

    // a transient failure backs off; the second in a row stops the schedule
    let gone = format!("git://127.0.0.1:{}/up", free_port());
    set_upstream(&env, repo, &gone).await;
    assert_eq!(sync(SyncReason::Scheduled).await.state, "failed");
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("failed", 1)
    );
    near(next, 1000.0);
    assert_eq!(sync(SyncReason::Scheduled).await.state, "failed");
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("hard_failed", 2)
    );
    assert_eq!(next, None, "no longer scheduled");

    // a new upstream URL resumes it at once; a good sync clears the failures
    stasis_shared::db::repos::update_mirror(
        &env.pool,
        repo,
        &stasis_shared::db::repos::MirrorSettings {
            upstream: Some((up.url(), None)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_, failures, next) = schedule_of(&env, repo).await;
    assert_eq!(
        (env.repo(repo).await.sync_status.as_str(), failures),
        ("failed", 0)
    );
    assert!(next.expect("due") <= 0.5, "due now");
    assert_eq!(sync(SyncReason::Manual).await.state, "done");
    assert_eq!(env.repo(repo).await.sync_status, "success");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn selective_sync_keeps_only_the_selected_refs_and_prunes_within_them() {
    let env = TestEnv::new().await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    for branch in ["release/1.0", "release/2.0", "feature"] {
        git(&up.path, &["branch", branch]);
    }
    git(&up.path, &["tag", "-a", "v1", "-m", "release"]);
    git(&up.path, &["tag", "v1-rc1"]);
    git(&up.path, &["update-ref", "refs/pull/1/head", "HEAD"]);
    let (owner, _) = env.user("kim", false).await;
    let repo = env.mirror(&owner, "up", &up.url()).await;
    stasis_shared::db::repos::update_mirror(
        &env.pool,
        repo,
        &stasis_shared::db::repos::MirrorSettings {
            include_refs: Some(vec![
                "refs/heads/main".into(),
                "refs/heads/release/*".into(),
                "refs/tags/*".into(),
            ]),
            exclude_refs: Some(vec!["refs/tags/v1-rc*".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let worker = env.spawn_worker();
    let mirror = env.mirror_path("kim", "up");
    let selected = |all: std::collections::BTreeMap<String, String>| -> Vec<String> {
        all.into_keys().filter(|r| r.starts_with("refs/")).collect()
    };
    let sync = |reason| {
        let env = &env;
        async move {
            let job = env.enqueue(repo, reason).await;
            assert_eq!(env.finished(job, WAIT).await.state, "done");
            env.runs(job).await.remove(0)
        }
    };

    sync(SyncReason::Import).await;
    assert_eq!(
        selected(stasis_testkit::git::refs(&mirror)),
        [
            "refs/heads/main",
            "refs/heads/release/1.0",
            "refs/heads/release/2.0",
            "refs/tags/v1"
        ]
    );

    // changes outside the selection are no change at all
    git(&up.path, &["update-ref", "refs/pull/2/head", "HEAD"]);
    git(&up.path, &["branch", "-D", "feature"]);
    assert!(sync(SyncReason::Scheduled).await.unchanged);

    // inside it: a deleted branch is pruned, a new one fetched, a moved one updated
    git(&up.path, &["branch", "-D", "release/1.0"]);
    git(&up.path, &["branch", "release/3.0"]);
    let moved_to = up.commit("main moves");
    let run = sync(SyncReason::Manual).await;
    assert!(!run.unchanged);
    assert_eq!((run.refs_pruned, run.refs_created), (1, 1), "{run:?}");
    let refs = stasis_testkit::git::refs(&mirror);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_sync_is_recorded_whole_at_its_end_and_a_slow_listing_shows_running() {
    let env = TestEnv::new().await;
    let served = env.dir.path().join("served");
    let _up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("uma", false).await;
    let repo = env.mirror(&owner, "up", &daemon.url("up")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, "done");
    worker.stop().await;
    let fence = env.repo(repo).await.sync_fence;

    // A worker died mid-attempt: the job is running with its run still open.
    let job = env.enqueue(repo, SyncReason::Scheduled).await;
    sqlx::query(
        "UPDATE sync_jobs SET state = 'running', attempts = 1, worker = 'gone' WHERE id = $1",
    )
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker) VALUES ($1, $2, 1, 'gone')",
    )
    .bind(repo)
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
    let worker = env.spawn_worker();
    let done = env.finished(job, WAIT).await;
    assert_eq!(
        (done.state.as_str(), done.attempts),
        ("done", 2),
        "{done:?}"
    );
    assert_ne!(done.worker.as_deref(), Some("gone"));
    let runs = env.runs(job).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].outcome.as_deref(), Some("abandoned"), "{runs:?}");
    let run = &runs[1];
    assert!(run.unchanged && run.attempt == 2, "{run:?}");
    assert_eq!(run.outcome.as_deref(), Some("success"));
    assert!(
        run.finished_at.is_some_and(|end| end >= run.started_at),
        "the run spans the attempt: {run:?}"
    );
    let after = env.repo(repo).await;
    assert!(after.sync_fence > fence, "the lease's fence is recorded");
    assert_eq!(after.sync_status, "success");

    // A listing that outlasts the grace before recording is shown running while it lasts.
    let slow = ThrottledProxy::start(daemon.port, 200).await;
    set_upstream(&env, repo, &slow.url("up")).await;
    let job = env.enqueue(repo, SyncReason::Manual).await;
    let running = stasis_testkit::eventually("the slow sync shown running", WAIT, || async {
        let job = env.job(job).await;
        (job.state == "running").then_some(job)
    })
    .await;
    assert!(
        running.worker.is_some() && running.attempts == 1,
        "{running:?}"
    );
    assert_eq!(env.repo(repo).await.sync_status, "syncing");
    let done = env.finished(job, WAIT).await;
    assert_eq!(
        (done.state.as_str(), done.attempts),
        ("done", 1),
        "{done:?}"
    );
    let runs = env.runs(job).await;
    assert!(runs.len() == 1 && runs[0].unchanged, "{runs:?}");
    assert!(runs[0].list_ms.unwrap_or(0) >= 500, "{runs:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_waiting_for_a_permit_keeps_its_repository_lock() {
    let mut env = TestEnv::new().await;
    env.cfg.worker.concurrency = 1;
    env.cfg.sync.lock_ttl = Duration::from_secs(1);
    let served = env.dir.path().join("served");
    let _a = Upstream::create(served.join("a"));
    let _b = Upstream::create(served.join("b"));
    let daemon = GitDaemon::start(&served);
    let (owner, _) = env.user("vera", false).await;
    let slow_repo = env.mirror(&owner, "a", &daemon.url("a")).await;
    let waiting_repo = env.mirror(&owner, "b", &daemon.url("b")).await;
    let worker = env.spawn_worker();
    for repo in [slow_repo, waiting_repo] {
        let import = env.enqueue(repo, SyncReason::Import).await;
        assert_eq!(env.finished(import, WAIT).await.state, "done");
    }
    // the only permit goes to a sync whose ref listing trickles in
    let slow = ThrottledProxy::start(daemon.port, 50).await;
    set_upstream(&env, slow_repo, &slow.url("a")).await;
    let slow_job = env.enqueue(slow_repo, SyncReason::Scheduled).await;
    stasis_testkit::eventually("the slow sync running", WAIT, || async {
        (env.job(slow_job).await.state == "running").then_some(())
    })
    .await;

    // the next delivery takes its repository's lock, then waits for the permit
    let waiting_job = env.enqueue(waiting_repo, SyncReason::Scheduled).await;
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let key = leases.repo_key(waiting_repo);
    stasis_testkit::eventually("the waiting delivery's lock", WAIT, || async {
        leases.is_held(&key).await.unwrap().then_some(())
    })
    .await;
    tokio::time::sleep(env.cfg.sync.lock_ttl * 3).await;
    assert_eq!(
        env.job(slow_job).await.state,
        "running",
        "the slow sync ended too soon to test anything: slow its upstream further"
    );
    assert_eq!(env.job(waiting_job).await.state, "pending");
    assert!(
        leases.is_held(&key).await.unwrap(),
        "the lock lapsed while its delivery waited for a permit"
    );

    let waited = env.finished(waiting_job, WAIT).await;
    assert_eq!((waited.state.as_str(), waited.attempts), ("done", 1));
    assert_eq!(env.finished(slow_job, WAIT).await.state, "done");
    let slow_run = env.runs(slow_job).await.pop().expect("a run");
    let waited_run = env.runs(waiting_job).await.pop().expect("a run");
    assert!(
        waited_run.started_at >= slow_run.finished_at.expect("finished"),
        "one permit, yet the runs overlap: {slow_run:?} {waited_run:?}"
    );
    worker.stop().await;
}
