//! `stasisctl` commands that change accounts and mirrors: users, tokens, pause,
//! resume, rename, delete, a new upstream, and retrying failed jobs in bulk. One behaviour per
//! test.

use stasis_shared::db::{jobs, repos, users};
use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::lock::Leases;
use stasis_testkit::git::{git, Upstream};
use stasis_testkit::TestEnv;
use uuid::Uuid;

use super::{ids, Ctl, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_as_json_and_as_a_table() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    env.user("alice", false).await;
    env.user("bob", true).await;
    let listed = ctl.json(&["user", "list", "--json"]).await;
    let names: Vec<_> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(ctl.ok(&["user", "list"]).await.contains("2 users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_rotated_revoked_and_created_for_existing_users_only() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (_, alice_token) = env.user("alice", false).await;
    env.user("bob", true).await;
    let (ok, _, err) = ctl.run(&["token", "create", "alice"]).await;
    assert!(!ok && err.contains("token rotate alice"), "{err}");
    let said = ctl.ok(&["token", "rotate", "alice"]).await;
    let rotated = said.lines().last().unwrap().to_owned();
    assert!(users::find_by_token(&env.pool, &alice_token)
        .await
        .unwrap()
        .is_none());
    let found = users::find_by_token(&env.pool, &rotated).await.unwrap();
    assert_eq!(found.map(|u| u.username).as_deref(), Some("alice"));
    ctl.ok(&["token", "revoke", "bob"]).await;
    let said = ctl.ok(&["token", "create", "bob"]).await;
    let created = said.lines().last().unwrap();
    assert!(users::find_by_token(&env.pool, created)
        .await
        .unwrap()
        .is_some());
    let (ok, _, err) = ctl.run(&["token", "rotate", "carol"]).await;
    assert!(!ok && err.contains("no user `carol`"), "{err}");
}

/// alice's mirror `good`, synced, and `b1`, `b2`, whose imports failed for good, all
/// through a real worker, stopped since. Returns `good`'s id and the failed jobs.
async fn failed_for_good(env: &TestEnv, alice: &users::User) -> (Uuid, Vec<Uuid>, Vec<String>) {
    let worker = env.spawn_worker();
    let good = Upstream::create(env.dir.path().join("good"));
    let good_repo = env.mirror(alice, "good", &good.url()).await;
    let good_job = env.enqueue(good_repo, SyncReason::Import).await;
    let mut broken = Vec::new();
    for name in ["b1", "b2"] {
        let missing = format!("file://{}", env.dir.path().join(name).display());
        let repo = env.mirror(alice, name, &missing).await;
        broken.push(env.enqueue(repo, SyncReason::Import).await);
    }
    assert_eq!(env.finished(good_job, WAIT).await.state, JobState::Done);
    let mut errors = Vec::new();
    for &job in &broken {
        let job = env.finished(job, WAIT).await;
        assert_eq!(job.state, JobState::Failed);
        errors.push(job.last_error.unwrap());
    }
    worker.stop().await;
    (good_repo, broken, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_failed_for_good_is_shown_with_its_allowance_full_error_and_zoned_times() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let (_, broken, errors) = failed_for_good(&env, &alice).await;
    let shown = ctl.ok(&["jobs", "show", &broken[0].to_string()]).await;
    let max = env.cfg.sync.max_attempts;
    assert!(shown.contains(&format!("attempt 1 of {max}")), "{shown}");
    assert!(shown.contains(&errors[0]), "full error in {shown}");
    assert!(shown.contains('Z'), "times carry their zone: {shown}");
}

/// `stasisctl jobs retry --state failed --reason import`: both failed jobs pending again.
async fn retry_failed_imports(ctl: &Ctl<'_>) -> String {
    ctl.ok(&["jobs", "retry", "--state", "failed", "--reason", "import"])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_jobs_are_retried_in_bulk_by_filter() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let (_, mut broken, _) = failed_for_good(&env, &alice).await;
    let said = ctl
        .ok(&["jobs", "retry", "--state", "failed", "--older-than", "1h"])
        .await;
    assert!(said.contains("0 jobs queued"), "{said}");
    let said = ctl
        .ok(&["jobs", "retry", "--state", "failed", "--reason", "manual"])
        .await;
    assert!(said.contains("0 jobs queued"), "{said}");
    let said = retry_failed_imports(&ctl).await;
    assert!(
        said.contains("2 jobs queued for retry, 0 skipped"),
        "{said}"
    );
    let pending = ctl
        .json(&["jobs", "list", "--state", "pending", "--json"])
        .await;
    let mut ids = ids(&pending);
    ids.sort();
    broken.sort();
    assert_eq!(ids, broken);
    let (ok, _, _) = ctl.run(&["jobs", "retry"]).await;
    assert!(!ok, "an id or --state is required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_is_paused_and_resumed() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let good_repo = env
        .mirror(&alice, "good", "https://example.com/x.git")
        .await;
    ctl.ok(&["mirror", "pause", "alice/good"]).await;
    let repo = repos::find(&env.pool, good_repo).await.unwrap().unwrap();
    assert!(!repo.mirror_enabled);
    ctl.ok(&["mirror", "resume", "alice/good"]).await;
    let repo = repos::find(&env.pool, good_repo).await.unwrap().unwrap();
    assert!(repo.mirror_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upstream_is_checked_as_the_api_checks_it_and_its_credentials_sealed() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let good_repo = env
        .mirror(&alice, "good", "https://example.com/x.git")
        .await;
    let (ok, _, err) = ctl
        .run(&[
            "mirror",
            "set-url",
            "alice/good",
            "http://1.2.3.4#@127.0.0.1/x",
        ])
        .await;
    assert!(!ok && err.contains("fragment"), "{err}");
    let said = ctl
        .ok(&[
            "mirror",
            "set-url",
            "alice/good",
            "http://carol:hunter2@127.0.0.1:9/x.git",
        ])
        .await;
    assert!(!said.contains("hunter2"), "{said}");
    let repo = repos::find(&env.pool, good_repo).await.unwrap().unwrap();
    assert_eq!(repo.mirror_url.as_deref(), Some("http://127.0.0.1:9/x.git"));
    let sealed = repo.mirror_credentials.expect("credentials kept, sealed");
    assert!(!sealed.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_set_from_a_file_sealed_and_removed() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let repo = env
        .mirror(&alice, "good", "https://example.com/x.git")
        .await;
    let file = env.dir.path().join("token");
    std::fs::write(&file, "glpat-s3cret:@/\n").unwrap();
    let file = file.to_str().unwrap();
    let said = ctl
        .ok(&[
            "mirror",
            "set-credentials",
            "alice/good",
            "--username",
            "oauth2",
            "--secret-file",
            file,
        ])
        .await;
    assert!(!said.contains("s3cret"), "{said}");
    let stored = repos::find(&env.pool, repo).await.unwrap().unwrap();
    assert_eq!(
        stored.mirror_url.as_deref(),
        Some("https://example.com/x.git")
    );
    let sealed = stored.mirror_credentials.expect("credentials stored");
    let cipher = env.cfg.secrets.cipher().unwrap().unwrap();
    let url = stasis_shared::git::url::with_credentials(
        "https://example.com/x.git",
        &cipher.open(&sealed).unwrap(),
    );
    assert_eq!(
        stasis_shared::git::url::http_credentials(&url),
        Some(("oauth2".into(), "glpat-s3cret:@/".into())),
        "the file's text without its newline"
    );
    // a secret on the command line is not accepted, nor credentials for git://
    let (ok, _, err) = ctl
        .run(&["mirror", "set-credentials", "alice/good", "--username", "u"])
        .await;
    assert!(!ok && err.contains("secret-file"), "{err}");
    let plain = env.mirror(&alice, "plain", "git://example.com/x.git").await;
    let (ok, _, err) = ctl
        .run(&[
            "mirror",
            "set-credentials",
            "alice/plain",
            "--username",
            "u",
            "--secret-file",
            file,
        ])
        .await;
    assert!(!ok && err.contains("http(s)"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let plain = repos::find(&env.pool, plain).await.unwrap().unwrap();
    assert!(plain.mirror_credentials.is_none());

    ctl.ok(&["mirror", "set-credentials", "alice/good", "--remove"])
        .await;
    let stored = repos::find(&env.pool, repo).await.unwrap().unwrap();
    assert!(stored.mirror_credentials.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_waits_for_the_sync_lock_and_takes_row_jobs_deliveries_and_directory() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let (good_repo, broken, _) = failed_for_good(&env, &alice).await;
    // b1 and b2 pending again, each with a delivery waiting
    retry_failed_imports(&ctl).await;

    let path = env.mirror_path("alice", "good");
    assert!(path.exists());
    let b1 = repos::find_by_name(&env.pool, "alice", "b1")
        .await
        .unwrap()
        .unwrap();
    // A worker holding b1's sync lock keeps it.
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let held = leases
        .try_acquire(
            &leases.repo_key(b1.id),
            env.cfg.sync.lock_ttl,
            b1.sync_fence,
        )
        .await
        .unwrap()
        .unwrap();
    let (ok, _, err) = ctl.run(&["mirror", "delete", "alice/b1"]).await;
    assert!(
        !ok && err.contains("a sync of alice/b1 is running"),
        "{err}"
    );
    leases.release(&held).await.unwrap();
    ctl.ok(&["mirror", "delete", "alice/good"]).await;
    ctl.ok(&["mirror", "delete", "alice/b1"]).await;
    assert!(!path.exists());
    assert!(repos::find(&env.pool, good_repo).await.unwrap().is_none());
    assert!(repos::find(&env.pool, b1.id).await.unwrap().is_none());
    let gone = [broken[0], broken[1]].map(|id| jobs::find(&env.pool, id));
    let mut left = 0;
    for found in gone {
        left += usize::from(found.await.unwrap().is_some());
    }
    assert_eq!(left, 1, "b1's pending job went with it");
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["jobs"]["pending"], 1, "{queue}");
    let r = &queue["redis"];
    let deliveries = r["active"].as_u64().unwrap() + r["scheduled"].as_u64().unwrap();
    assert_eq!(deliveries, 1, "only b2's delivery is left: {queue}");
    let (ok, _, err) = ctl.run(&["mirror", "delete", "alice/good"]).await;
    assert!(!ok && err.contains("no repository alice/good"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_the_directory_and_refuses_bad_or_taken_names_and_a_held_lock() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let id = env.mirror(&alice, "one", "https://example.com/x.git").await;
    env.mirror(&alice, "two", "https://example.com/y.git").await;
    let old = env.mirror_path("alice", "one");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    git(old.parent().unwrap(), &["init", "-q", "--bare", "one.git"]);

    let (ok, _, err) = ctl.run(&["mirror", "rename", "alice/one", "two"]).await;
    assert!(!ok && err.contains("alice/two already exists"), "{err}");
    let (ok, _, err) = ctl.run(&["mirror", "rename", "alice/one", "../x"]).await;
    assert!(!ok && err.contains("name may contain only"), "{err}");
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let held = leases
        .try_acquire(&leases.repo_key(id), env.cfg.sync.lock_ttl, 0)
        .await
        .unwrap()
        .unwrap();
    let (ok, _, err) = ctl.run(&["mirror", "rename", "alice/one", "three"]).await;
    assert!(
        !ok && err.contains("a sync of alice/one is running"),
        "{err}"
    );
    assert!(old.is_dir(), "a refusal moved the directory");
    leases.release(&held).await.unwrap();

    ctl.ok(&["mirror", "rename", "alice/one", "three"]).await;
    assert!(!old.exists());
    assert!(env.mirror_path("alice", "three").join("HEAD").is_file());
    assert_eq!(env.repo(id).await.name, "three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_repositories_is_kept_and_one_without_deleted() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    env.user("bob", true).await;
    env.mirror(&alice, "b2", "https://example.com/x.git").await;
    let (ok, _, err) = ctl.run(&["user", "delete", "alice"]).await;
    assert!(!ok && err.contains("owns 1 repositories"), "{err}");
    assert!(users::exists(&env.pool, "alice").await.unwrap());
    ctl.ok(&["user", "delete", "bob"]).await;
    assert!(!users::exists(&env.pool, "bob").await.unwrap());
}
