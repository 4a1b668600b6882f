//! Git LFS through the whole sync pipeline (Postgres, Redis, an in-process worker) from a
//! smart-HTTP upstream on loopback whose LFS batch API serves real objects `git lfs`
//! stored: the mirror gets the objects, a `git lfs` clone of it checks out real content,
//! and what must not be stored is not, while the git part of the sync stands.
//!
//! On a multi-thread runtime like every in-process worker test (see
//! `housekeeping_record.rs`).

use std::path::Path;
use std::time::Duration;

use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::http::GitHttpServer;
use stasis_testkit::lfs::{clone_with_lfs, commit_lfs_file, objects_dir};
use stasis_testkit::TestEnv;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// Incompressible pseudo-random bytes, different for each `seed`.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15 ^ seed; // xorshift random state
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn object_path(mirror: &Path, oid: &str) -> std::path::PathBuf {
    mirror
        .join("lfs/objects")
        .join(&oid[0..2])
        .join(&oid[2..4])
        .join(oid)
}

#[derive(Debug, sqlx::FromRow)]
struct LfsRun {
    outcome: Option<String>,
    lfs_objects: Option<i32>,
    lfs_bytes: Option<i64>,
    lfs_error: Option<String>,
}

async fn lfs_run(env: &TestEnv, job: Uuid) -> LfsRun {
    own_run(env, job).await.expect("the job's run")
}

/// The job's own run; `None` when its check only listed and was counted in the run
/// before it.
async fn own_run(env: &TestEnv, job: Uuid) -> Option<LfsRun> {
    sqlx::query_as(
        "SELECT outcome, lfs_objects, lfs_bytes, lfs_error FROM sync_runs WHERE job_id = $1",
    )
    .bind(job)
    .fetch_optional(&env.pool)
    .await
    .unwrap()
}

async fn sync(env: &TestEnv, repo: Uuid, reason: SyncReason) -> Uuid {
    let job = env.enqueue(repo, reason).await;
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    job
}

/// alice's mirror `r` of `url`, its LFS switch set to `lfs`, imported by a worker that
/// stops after it; the repository and the import's run.
async fn imported(env: &TestEnv, url: &str, lfs: bool) -> (Uuid, LfsRun) {
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "r", url).await;
    sqlx::query("UPDATE repositories SET lfs_enabled = $2 WHERE id = $1")
        .bind(repo)
        .bind(lfs)
        .execute(&env.pool)
        .await
        .unwrap();
    let worker = env.spawn_worker();
    let import = sync(env, repo, SyncReason::Import).await;
    worker.stop().await;
    (repo, lfs_run(env, import).await)
}

struct Fixture {
    env: TestEnv,
    up: Upstream,
    server: GitHttpServer,
}

async fn fixture() -> Fixture {
    let env = TestEnv::new().await;
    let root = env.dir.path().join("upstreams");
    let up = Upstream::create(root.join("r.git"));
    let server = GitHttpServer::start(&root);
    server.serve_lfs(&objects_dir(&up));
    Fixture { env, up, server }
}

fn downloads(server: &GitHttpServer) -> usize {
    let requests = server.requests();
    requests
        .iter()
        .filter(|r| r.starts_with("GET /lfs-objects/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clone_of_the_mirror_checks_out_the_real_lfs_content() {
    let Fixture {
        env,
        mut up,
        server,
    } = fixture().await;
    // the batch API needs the mirror's credentials, as the git part does
    server.require_basic_auth("ci", "s3cret-token");
    let (first, second) = (content(1, 5000), content(2, 70_000));
    commit_lfs_file(&up, "first.bin", &first);
    let second_oid = commit_lfs_file(&up, "second.bin", &second);
    let (alice, _) = env.user("alice", false).await;
    let url = server
        .url("r.git")
        .replace("http://", "http://ci:s3cret-token@");
    let repo = env.mirror(&alice, "r", &url).await;
    let worker = env.spawn_worker();

    let import = sync(&env, repo, SyncReason::Import).await;
    let run = lfs_run(&env, import).await;
    assert_eq!(run.lfs_error, None, "{run:?}");
    assert_eq!(run.lfs_objects, Some(2));
    assert_eq!(run.lfs_bytes, Some((first.len() + second.len()) as i64));
    let mirror = env.mirror_path("alice", "r");
    assert_mirrors(&mirror, &up);
    let checkout = env.dir.path().join("checkout");
    let (cloned, stderr) = clone_with_lfs(&mirror, &checkout);
    assert!(cloned, "git lfs clone of the mirror: {stderr}");
    assert_eq!(std::fs::read(checkout.join("first.bin")).unwrap(), first);
    assert_eq!(std::fs::read(checkout.join("second.bin")).unwrap(), second);
    assert!(object_path(&mirror, &second_oid).is_file());

    // only what the new commits point at is asked for: one more object, not three
    let third = content(3, 1234);
    commit_lfs_file(&up, "third.bin", &third);
    up.commit("a plain commit beside it");
    let later = sync(&env, repo, SyncReason::Manual).await;
    let run = lfs_run(&env, later).await;
    assert_eq!((run.lfs_objects, run.lfs_error.as_deref()), (Some(1), None));
    assert_eq!(downloads(&server), 3);
    worker.stop().await;
    let again = env.dir.path().join("again");
    assert!(clone_with_lfs(&mirror, &again).0);
    assert_eq!(std::fs::read(again.join("third.bin")).unwrap(), third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_is_not_stored_and_the_git_sync_stands() {
    let Fixture { env, up, server } = fixture().await;
    let good = content(10, 3000);
    let good_oid = commit_lfs_file(&up, "good.bin", &good);
    let swapped_oid = commit_lfs_file(&up, "swapped.bin", &content(11, 4000));
    let longer_oid = commit_lfs_file(&up, "longer.bin", &content(12, 2000));
    // the same size with other bytes, and one byte more than the pointer says
    server.lfs_tamper(&swapped_oid, &content(99, 4000));
    server.lfs_tamper(&longer_oid, &content(12, 2001));
    let (repo, run) = imported(&env, &server.url("r.git"), true).await;
    assert_eq!(run.outcome.as_deref(), Some("success"));
    assert_eq!(run.lfs_objects, Some(1));
    assert_eq!(run.lfs_bytes, Some(good.len() as i64));
    let error = run.lfs_error.expect("the refusals are recorded");
    assert!(error.contains("and 1 more"), "{error}");
    assert!(
        error.contains("does not hash to its oid") || error.contains("its pointer says 2000"),
        "{error}"
    );
    let mirror = env.mirror_path("alice", "r");
    assert_mirrors(&mirror, &up);
    assert!(object_path(&mirror, &good_oid).is_file());
    assert!(!object_path(&mirror, &swapped_oid).exists());
    assert!(!object_path(&mirror, &longer_oid).exists());
    let leftovers = std::fs::read_dir(mirror.join("lfs/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "partial downloads are removed");
    let status = env.repo(repo).await;
    assert_eq!(status.sync_error, None, "the mirror's sync succeeded");
    // what the history endpoint shows
    let history = stasis_shared::db::runs::for_repo(&env.pool, repo, 1)
        .await
        .unwrap();
    assert_eq!(history[0].lfs_objects, Some(1));
    assert_eq!(history[0].lfs_bytes, Some(good.len() as i64));
    assert!(history[0].lfs_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_over_the_per_object_limit_are_skipped() {
    let Fixture {
        mut env,
        up,
        server,
    } = fixture().await;
    env.cfg.lfs.max_object_size = bytesize::ByteSize::b(1000);
    let small_oid = commit_lfs_file(&up, "small.bin", &content(20, 1000));
    let large_oid = commit_lfs_file(&up, "large.bin", &content(21, 1001));
    let (_, run) = imported(&env, &server.url("r.git"), true).await;
    assert_eq!(run.lfs_objects, Some(1));
    let error = run.lfs_error.unwrap_or_default();
    assert!(
        error.contains(&large_oid) && error.contains("lfs.max_object_size"),
        "{error}"
    );
    let mirror = env.mirror_path("alice", "r");
    assert!(object_path(&mirror, &small_oid).is_file());
    assert!(!object_path(&mirror, &large_oid).exists());
    assert_eq!(downloads(&server), 1, "{:?}", server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_lfs_off_for_the_mirror_nothing_is_downloaded() {
    let Fixture { env, up, server } = fixture().await;
    commit_lfs_file(&up, "a.bin", &content(30, 3000));
    let (_, run) = imported(&env, &server.url("r.git"), false).await;
    assert_eq!((run.lfs_objects, run.lfs_error), (None, None));
    let mirror = env.mirror_path("alice", "r");
    assert_mirrors(&mirror, &up);
    assert!(!mirror.join("lfs").exists());
    let lfs_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.contains("lfs"))
        .collect();
    assert!(lfs_requests.is_empty(), "{lfs_requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_without_an_lfs_api_fails_lfs_only() {
    let env = TestEnv::new().await;
    let root = env.dir.path().join("upstreams");
    let up = Upstream::create(root.join("r.git"));
    commit_lfs_file(&up, "a.bin", &content(40, 3000));
    // git only: the batch request reaches git http-backend, which knows no such path
    let server = GitHttpServer::start(&root);
    let (_, run) = imported(&env, &server.url("r.git"), true).await;
    assert_eq!(run.outcome.as_deref(), Some("success"));
    assert_eq!(run.lfs_objects, Some(0));
    let error = run.lfs_error.unwrap_or_default();
    assert!(
        error.starts_with("LFS batch API: the upstream answered HTTP"),
        "{error}"
    );
    assert_mirrors(&env.mirror_path("alice", "r"), &up);
}

#[test]
fn the_scan_finds_new_pointers_and_a_stopped_one_ends_its_walk() {
    use std::sync::Arc;
    use std::time::Instant;

    use stasis_worker::git::fetch::{StopFlag, StopReason};
    use stasis_worker::git::lfs::{scan, LfsError};

    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::create(dir.path().join("r"));
    let before = stasis_testkit::git::git(&up.path, &["rev-parse", "HEAD"]);
    let oid = commit_lfs_file(&up, "a.bin", &content(50, 2048));
    let head = stasis_testkit::git::git(&up.path, &["rev-parse", "HEAD"]);
    let tip = |s: &str| git2::Oid::from_str(s.trim()).unwrap();
    let git_dir = up.path.join(".git");
    let later = Instant::now() + Duration::from_secs(60);

    let found = scan::new_pointers(
        &git_dir,
        &[tip(&before)],
        &[tip(&head)],
        Arc::default(),
        later,
    )
    .expect("scan");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].oid.as_str(), found[0].size), (oid.as_str(), 2048));
    // only new objects: from the new tip back to itself there is nothing
    let none = scan::new_pointers(
        &git_dir,
        &[tip(&head)],
        &[tip(&head)],
        Arc::default(),
        later,
    );
    assert_eq!(none, Ok(Vec::new()));

    let stop = Arc::new(StopFlag::default());
    stop.stop(StopReason::Cancelled);
    let stopped = scan::new_pointers(&git_dir, &[], &[tip(&head)], stop, later);
    assert_eq!(stopped, Err(LfsError::Stopped));
}

/// A mirror its fetch created holds only new objects: the scan of its whole store finds
/// the pointers a walk of its history finds, and a stopped one ends.
#[test]
fn the_scan_of_a_created_mirror_finds_what_the_walk_finds() {
    use std::sync::Arc;
    use std::time::Instant;

    use stasis_worker::git::fetch::{StopFlag, StopReason};
    use stasis_worker::git::lfs::{scan, LfsError};

    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::create(dir.path().join("r"));
    let first = commit_lfs_file(&up, "a.bin", &content(51, 4096));
    up.commit("between the two");
    let second = commit_lfs_file(&up, "b.bin", &content(52, 100));
    let head = stasis_testkit::git::git(&up.path, &["rev-parse", "HEAD"]);
    let head = git2::Oid::from_str(head.trim()).unwrap();
    let git_dir = up.path.join(".git");
    let later = Instant::now() + Duration::from_secs(60);

    let walked = scan::new_pointers(&git_dir, &[], &[head], Arc::default(), later).expect("walk");
    let listed = scan::all_pointers(&git_dir, Arc::default(), later).expect("list");
    assert_eq!(listed, walked);
    let mut oids: Vec<&str> = listed.iter().map(|p| p.oid.as_str()).collect();
    oids.sort_unstable();
    let mut expected = vec![first.as_str(), second.as_str()];
    expected.sort_unstable();
    assert_eq!(oids, expected);

    let stop = Arc::new(StopFlag::default());
    stop.stop(StopReason::Cancelled);
    assert_eq!(
        scan::all_pointers(&git_dir, stop, later),
        Err(LfsError::Stopped)
    );
}

/// The mirror's remembered missing objects: (oid, attempts, last_error).
async fn remembered(env: &TestEnv, repo: Uuid) -> Vec<(String, i32, String)> {
    sqlx::query_as("SELECT oid, attempts, last_error FROM lfs_missing WHERE repo_id = $1")
        .bind(repo)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

/// `lfs_missing_objects` as the mirror's status endpoint reads it.
async fn status_missing(env: &TestEnv) -> i64 {
    stasis_shared::db::repos::find_with_active_job(&env.pool, "alice", "r")
        .await
        .unwrap()
        .expect("the mirror")
        .lfs_missing_objects
}

/// A mirror imported while the upstream served `bad.bin`'s object corrupt: its oid, and
/// the checks that the import left it missing and remembered.
async fn imported_with_a_corrupt_object(f: &Fixture) -> (Uuid, String, Vec<u8>) {
    let good = content(60, 2500);
    commit_lfs_file(&f.up, "good.bin", &good);
    let bad = content(61, 3000);
    let bad_oid = commit_lfs_file(&f.up, "bad.bin", &bad);
    f.server.lfs_tamper(&bad_oid, &content(62, 3000));
    let (repo, run) = imported(&f.env, &f.server.url("r.git"), true).await;
    assert_eq!(run.lfs_objects, Some(1), "{run:?}");
    let rows = remembered(&f.env, repo).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1), (bad_oid.as_str(), 1));
    assert!(rows[0].2.contains("does not hash to its oid"), "{rows:?}");
    assert_eq!(status_missing(&f.env).await, 1);
    // what the remembering is for: a clone of the mirror fails on the file
    let mirror = f.env.mirror_path("alice", "r");
    let (cloned, stderr) = clone_with_lfs(&mirror, &f.env.dir.path().join("broken"));
    assert!(!cloned, "a clone cannot check out bad.bin");
    assert!(stderr.contains("bad.bin"), "{stderr}");
    (repo, bad_oid, bad)
}

/// After the object arrived: stored, forgotten, counted 0, and a clone checks it out.
async fn arrived(f: &Fixture, repo: Uuid, oid: &str, bytes: &[u8]) {
    let mirror = f.env.mirror_path("alice", "r");
    assert!(object_path(&mirror, oid).is_file());
    assert_eq!(remembered(&f.env, repo).await, Vec::new());
    assert_eq!(status_missing(&f.env).await, 0);
    assert_eq!(f.env.repo(repo).await.lfs_retry_at, None);
    let checkout = f.env.dir.path().join("healed");
    let (cloned, stderr) = clone_with_lfs(&mirror, &checkout);
    assert!(cloned, "git lfs clone of the mirror: {stderr}");
    assert_eq!(std::fs::read(checkout.join("bad.bin")).unwrap(), bytes);
}

fn short_backoff(env: &mut TestEnv) {
    env.cfg.lfs.retry_base_delay = Duration::from_millis(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_arrives_on_the_next_sync_once_healed_without_new_commits() {
    let mut f = fixture().await;
    short_backoff(&mut f.env);
    let (repo, oid, bytes) = imported_with_a_corrupt_object(&f).await;
    let worker = f.env.spawn_worker();

    f.server.lfs_heal(&oid);
    let next = sync(&f.env, repo, SyncReason::Manual).await;
    let run = lfs_run(&f.env, next).await;
    assert_eq!((run.lfs_objects, run.lfs_error.as_deref()), (Some(1), None));
    let unchanged: bool = sqlx::query_scalar("SELECT unchanged FROM sync_runs WHERE job_id = $1")
        .bind(next)
        .fetch_one(&f.env.pool)
        .await
        .unwrap();
    assert!(unchanged, "the retry came with a sync that fetched nothing");
    arrived(&f, repo, &oid, &bytes).await;

    // once present it is not asked for again
    let before = downloads(&f.server);
    let later = sync(&f.env, repo, SyncReason::Manual).await;
    assert!(own_run(&f.env, later).await.is_none(), "it only listed");
    assert_eq!(downloads(&f.server), before);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_object_arrives_on_the_next_sync_once_healed_with_new_commits() {
    let mut f = fixture().await;
    short_backoff(&mut f.env);
    let (repo, oid, bytes) = imported_with_a_corrupt_object(&f).await;
    let worker = f.env.spawn_worker();

    // still corrupt: tried again, one more attempt counted, still missing
    f.up.commit("work while the LFS server is broken");
    let broken = sync(&f.env, repo, SyncReason::Manual).await;
    let run = lfs_run(&f.env, broken).await;
    assert_eq!(run.lfs_objects, Some(0), "{run:?}");
    assert!(run.lfs_error.is_some(), "{run:?}");
    let rows = remembered(&f.env, repo).await;
    assert_eq!((rows.len(), rows[0].1), (1, 2), "{rows:?}");
    assert_eq!(status_missing(&f.env).await, 1);

    f.server.lfs_heal(&oid);
    let third = content(63, 1500);
    let third_oid = commit_lfs_file(&f.up, "third.bin", &third);
    let next = sync(&f.env, repo, SyncReason::Manual).await;
    let run = lfs_run(&f.env, next).await;
    assert_eq!((run.lfs_objects, run.lfs_error.as_deref()), (Some(2), None));
    arrived(&f, repo, &oid, &bytes).await;
    let mirror = f.env.mirror_path("alice", "r");
    assert!(object_path(&mirror, &third_oid).is_file());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operators_request_tries_again_before_the_backoff_ends_and_lfs_off_forgets() {
    let mut f = fixture().await;
    f.env.cfg.lfs.retry_base_delay = Duration::from_secs(3600);
    let (repo, oid, bytes) = imported_with_a_corrupt_object(&f).await;
    let worker = f.env.spawn_worker();
    f.server.lfs_heal(&oid);

    // within the backoff: a sync does not ask for it
    let before = downloads(&f.server);
    let waiting = sync(&f.env, repo, SyncReason::Manual).await;
    assert!(own_run(&f.env, waiting).await.is_none(), "it only listed");
    assert_eq!(downloads(&f.server), before);
    assert_eq!(status_missing(&f.env).await, 1);

    // what `?lfs_retry=true` and `stasisctl mirrors sync --lfs-retry` do
    let due = stasis_shared::db::lfs_missing::retry_now(&f.env.pool, repo)
        .await
        .unwrap();
    assert_eq!(due, 1);
    let asked = sync(&f.env, repo, SyncReason::Manual).await;
    assert_eq!(lfs_run(&f.env, asked).await.lfs_objects, Some(1));
    arrived(&f, repo, &oid, &bytes).await;
    worker.stop().await;

    // a mirror whose LFS is turned off forgets what it lacked; a deleted one too
    let other_oid = commit_lfs_file(&f.up, "other.bin", &content(64, 900));
    f.server.lfs_tamper(&other_oid, &content(65, 900));
    let worker = f.env.spawn_worker();
    sync(&f.env, repo, SyncReason::Manual).await;
    worker.stop().await;
    assert_eq!(status_missing(&f.env).await, 1);
    let off = stasis_shared::db::repos::MirrorSettings {
        lfs: Some(false),
        ..Default::default()
    };
    stasis_shared::db::repos::update_mirror(&f.env.pool, repo, &off, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(remembered(&f.env, repo).await, Vec::new());
    assert_eq!(f.env.repo(repo).await.lfs_retry_at, None);
    assert_eq!(status_missing(&f.env).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_mirror_leaves_no_missing_objects_behind() {
    let f = fixture().await;
    let (repo, _, _) = imported_with_a_corrupt_object(&f).await;
    assert!(stasis_shared::db::repos::delete(&f.env.pool, repo)
        .await
        .unwrap());
    assert_eq!(remembered(&f.env, repo).await, Vec::new());
}
