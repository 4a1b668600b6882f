//! `stasisctl` commands that inspect and act on jobs and the queue: help, list, show,
//! discard, retry, sync now, the fleet at a glance and the scheduler. One behaviour per
//! test, on jobs run through the real pipeline.

use stasis_shared::db::users::User;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::worker::InProcessWorker;
use stasis_testkit::TestEnv;
use uuid::Uuid;

use super::{ids, Ctl, WAIT};

/// Help is answered before any configuration is read or service reached: run with an
/// empty environment, nothing to connect to.
#[test]
fn every_command_group_has_help() {
    for command in [
        vec![],
        vec!["jobs"],
        vec!["jobs", "list"],
        vec!["mirrors"],
        vec!["queue"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stasisctl"))
            .args(&command)
            .arg("--help")
            .env_clear()
            .output()
            .expect("run stasisctl");
        let help = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{command:?}: {stderr}");
        let usage = ["Usage: stasisctl"]
            .into_iter()
            .chain(command.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(help.contains(&format!("{usage} ")), "{command:?}: {help}");
    }
}

/// Jobs of alice's mirrors: `parked`, discarded while it waited; `good`, done; and
/// `broken`, failed for good (its upstream, `later`, does not exist yet). The worker
/// that ran them keeps running.
struct ThreeJobs {
    worker: InProcessWorker,
    parked: Uuid,
    good_job: Uuid,
    broken_job: Uuid,
    later: std::path::PathBuf,
}

/// alice's mirror `parked` of `good`, enqueued with no worker running: its job.
async fn park(env: &TestEnv, alice: &User, good: &Upstream) -> Uuid {
    let parked_repo = env.mirror(alice, "parked", &good.url()).await;
    env.enqueue(parked_repo, SyncReason::Manual).await
}

async fn three_jobs(env: &TestEnv, ctl: &Ctl<'_>) -> ThreeJobs {
    let (alice, _) = env.user("alice", false).await;
    let good = Upstream::create(env.dir.path().join("good"));
    let later = env.dir.path().join("later");
    let parked = park(env, &alice, &good).await;
    ctl.ok(&["jobs", "discard", &parked.to_string()]).await;
    let worker = env.spawn_worker();
    let good_repo = env.mirror(&alice, "good", &good.url()).await;
    let broken_repo = env
        .mirror(&alice, "broken", &format!("file://{}", later.display()))
        .await;
    let good_job = env.enqueue(good_repo, SyncReason::Import).await;
    let broken_job = env.enqueue(broken_repo, SyncReason::Import).await;
    assert_eq!(env.finished(good_job, WAIT).await.state, JobState::Done);
    assert_eq!(env.finished(broken_job, WAIT).await.state, JobState::Failed);
    ThreeJobs {
        worker,
        parked,
        good_job,
        broken_job,
        later,
    }
}

/// The broken upstream created and its job retried to success; returns the upstream.
async fn retry_broken(env: &TestEnv, ctl: &Ctl<'_>, jobs: &ThreeJobs) -> Upstream {
    let fixed = Upstream::create(jobs.later.clone());
    ctl.ok(&["jobs", "retry", &jobs.broken_job.to_string()])
        .await;
    let job = env.finished(jobs.broken_job, WAIT).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    fixed
}

/// `stasisctl mirrors sync alice/good`, run to the end; returns its job.
async fn sync_now_good(env: &TestEnv, ctl: &Ctl<'_>) -> Uuid {
    let said = ctl.ok(&["mirrors", "sync", "alice/good"]).await;
    let job: Uuid = said
        .split_whitespace()
        .last()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {said:?}"));
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_in_the_queue_is_discarded() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (alice, _) = env.user("alice", false).await;
    let good = Upstream::create(env.dir.path().join("good"));
    let parked = park(&env, &alice, &good).await;
    let pending = ctl
        .json(&["jobs", "list", "--state", "pending", "--json"])
        .await;
    assert_eq!(ids(&pending), [parked]);
    let said = ctl.ok(&["jobs", "discard", &parked.to_string()]).await;
    assert!(
        said.contains("was pending; 1 queued deliveries removed"),
        "{said}"
    );
    let dead = ctl
        .json(&["jobs", "list", "--state", "dead", "--json"])
        .await;
    assert_eq!(ids(&dead), [parked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_listed_by_state_by_repository_and_as_a_table() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    let failed = ctl
        .json(&["jobs", "list", "--state", "failed", "--json"])
        .await;
    assert_eq!(ids(&failed), [jobs.broken_job]);
    assert_eq!(failed["jobs"][0]["repo"], "alice/broken");
    let by_repo = ctl
        .json(&["jobs", "list", "--repo", "alice/good", "--json"])
        .await;
    assert_eq!(ids(&by_repo), [jobs.good_job]);
    let table = ctl.ok(&["jobs", "list"]).await;
    assert!(
        table.contains("LAST ERROR") && table.contains("alice/broken"),
        "{table}"
    );
    assert!(table.contains("3 of 3 jobs"), "{table}");
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_is_shown_as_json_and_as_a_table() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    let broken_job = jobs.broken_job.to_string();
    let shown = ctl.json(&["jobs", "show", &broken_job, "--json"]).await;
    assert_eq!(shown["state"], "failed");
    assert_eq!(shown["runs"][0]["error_kind"], "not_found", "{shown}");
    assert_eq!(shown["attempts"], 1, "{shown}");
    let shown = ctl.ok(&["jobs", "show", &broken_job]).await;
    assert!(
        shown.contains("OUTCOME") && shown.contains("failed"),
        "{shown}"
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_job_or_state_is_refused() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let (ok, _, err) = ctl
        .run(&["jobs", "show", &Uuid::new_v4().to_string()])
        .await;
    assert!(!ok && err.contains("no job"), "{err}");
    let (ok, _, err) = ctl.run(&["jobs", "list", "--state", "stuck"]).await;
    assert!(!ok && err.contains("stuck"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_mirrors_are_listed() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    let failing = ctl.json(&["mirrors", "list", "--failed", "--json"]).await;
    let names: Vec<_> = failing["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["full_name"].clone())
        .collect();
    assert_eq!(names, ["alice/broken"]);
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_retried_once_its_upstream_exists_succeeds_and_only_once() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    let fixed = retry_broken(&env, &ctl, &jobs).await;
    assert_mirrors(&env.mirror_path("alice", "broken"), &fixed);
    // a done job cannot be retried
    let (ok, _, err) = ctl
        .run(&["jobs", "retry", &jobs.broken_job.to_string()])
        .await;
    assert!(
        !ok && err.contains("is done; it cannot be retried"),
        "{err}"
    );
    let history = ctl
        .json(&["mirrors", "history", "alice/broken", "--json"])
        .await;
    let outcomes: Vec<_> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["success", "failed"], "newest first");
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_now_from_the_cli_runs_a_job_and_names_an_unknown_mirror() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    sync_now_good(&env, &ctl).await;
    let (ok, _, err) = ctl.run(&["mirrors", "sync", "alice/nothing"]).await;
    assert!(!ok && err.contains("no mirror alice/nothing"), "{err}");
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_at_a_glance_counts_jobs_attempts_deliveries_and_workers() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let jobs = three_jobs(&env, &ctl).await;
    retry_broken(&env, &ctl, &jobs).await;
    sync_now_good(&env, &ctl).await;
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["jobs"]["done"], 3, "{queue}");
    assert_eq!(queue["jobs"]["dead"], 1, "{queue}");
    assert_eq!(queue["throughput"]["last_1h"], 4, "{queue}");
    assert_eq!(queue["redis"]["active"], 0, "{queue}");
    let workers = ctl.json(&["workers", "--json"]).await;
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    assert!(workers["workers"][0]["host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    let table = ctl.ok(&["queue"]).await;
    assert!(table.contains("workers alive: 1"), "{table}");
    assert_eq!(
        env.job(jobs.parked).await.state,
        JobState::Dead,
        "the discarded job stays dead"
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_is_paused_and_the_interval_set_from_the_cli() {
    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    ctl.ok(&["scheduler", "pause"]).await;
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["scheduler"]["paused"], true);
    ctl.ok(&["scheduler", "resume"]).await;
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["scheduler"]["paused"], false);
    let said = ctl.ok(&["mirror", "interval", "30m"]).await;
    assert!(said.contains("30m (from override)"), "{said}");
    let (ok, _, _) = ctl.run(&["mirror", "interval", "5s"]).await;
    assert!(!ok, "intervals under a minute are refused");
    let said = ctl.ok(&["mirrors", "interval", "reset"]).await;
    assert!(said.contains("(from config)"), "{said}");
}

/// `mirrors sync --lfs-retry`: a Git LFS object the upstream served corrupt, healed since,
/// arrives with the sync it queues, long before its backoff would have let it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_lfs_retry_brings_a_missing_lfs_object_at_once() {
    use stasis_testkit::http::GitHttpServer;
    use stasis_testkit::lfs::{commit_lfs_file, objects_dir};

    let mut env = TestEnv::new().await;
    env.cfg.lfs.retry_base_delay = std::time::Duration::from_secs(3600);
    let ctl = Ctl { env: &env };
    let root = env.dir.path().join("upstreams");
    let up = Upstream::create(root.join("r.git"));
    let server = GitHttpServer::start(&root);
    server.serve_lfs(&objects_dir(&up));
    let oid = commit_lfs_file(&up, "big.bin", &[3u8; 2000]);
    server.lfs_tamper(&oid, &[4u8; 2000]);
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "r", &server.url("r.git")).await;
    let worker = env.spawn_worker();
    let import = env.enqueue(repo, SyncReason::Import).await;
    assert_eq!(env.finished(import, WAIT).await.state, JobState::Done);
    let missing = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM lfs_missing WHERE repo_id = $1")
            .bind(repo)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        n
    };
    assert_eq!(missing().await, 1);

    server.lfs_heal(&oid);
    let said = ctl.ok(&["mirrors", "sync", "alice/r", "--lfs-retry"]).await;
    assert!(
        said.contains("1 missing LFS objects of alice/r due now"),
        "{said}"
    );
    let job: Uuid = said
        .split_whitespace()
        .last()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {said:?}"));
    assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    assert_eq!(missing().await, 0);
    worker.stop().await;
}

/// `queue purge-dead` empties every lane's dead set and says how many went; the queue
/// overview then counts none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_deliveries_are_purged_from_the_cli() {
    use redis::AsyncCommands;
    use stasis_shared::domain::Lane;
    use stasis_shared::queue::queue_name;

    let env = TestEnv::new().await;
    let ctl = Ctl { env: &env };
    let mut redis = env.redis.clone();
    for (lane, ids) in [
        (Lane::Priority, &["a", "b"][..]),
        (Lane::Scheduled, &["c"][..]),
    ] {
        let q = queue_name(&env.cfg.queue.namespace, "default", lane);
        for id in ids {
            let _: () = redis.sadd(format!("{q}:dead"), *id).await.unwrap();
        }
    }
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["redis"]["dead"], 3, "{queue}");
    let said = ctl.ok(&["queue", "purge-dead"]).await;
    assert_eq!(said.trim(), "3 dead deliveries removed");
    let queue = ctl.json(&["queue", "--json"]).await;
    assert_eq!(queue["redis"]["dead"], 0, "{queue}");
}
