//! Named storages across hosts, two storage directories standing for two hosts: mirrors
//! placed by weight, each storage served by its own workers (as users that cannot read
//! each other's storage), a storage whose workers all died waits and catches up without
//! touching the other, and mirrors moved between storages under load and worker kills
//! end on the target at their upstream's head, with nothing lost or run twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use stasis_shared::db::{jobs, storages};
use stasis_shared::domain::{JobState, RunOutcome, SyncReason};
use stasis_shared::moves;
use stasis_shared::placement;
use stasis_testkit::git::{assert_mirrors, free_port, GitDaemon, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(180);

/// Users the workers of `a` and `b` run as.
const UID_A: u32 = 60_101;
const UID_B: u32 = 60_102;

fn serve(env: &TestEnv, count: usize) -> (GitDaemon, Vec<Upstream>) {
    let served = env.dir.path().join("served");
    let ups = (0..count)
        .map(|i| {
            let mut up = Upstream::create(served.join(format!("u{i}")));
            up.add_blob("payload.bin", 20_000);
            up
        })
        .collect();
    (GitDaemon::start(&served), ups)
}

fn worker(env: &TestEnv, storage: &str, log: &str) -> Proc {
    Proc::spawn(
        env,
        "stasis-worker",
        log,
        &[("STASIS_WORKER_STORAGES", storage.to_owned())],
    )
}

/// Waits until each storage has the given number of live workers.
async fn live(env: &TestEnv, want: &[(&str, i64)]) {
    let names = env.cfg.storage.names();
    let window = env.cfg.queue.liveness_window();
    eventually(&format!("live workers {want:?}"), WAIT, || async {
        let states = storages::states(&env.pool, &names, window).await.ok()?;
        want.iter()
            .all(|(name, n)| {
                states
                    .iter()
                    .any(|s| s.name == *name && s.live_workers == *n)
            })
            .then_some(())
    })
    .await;
}

async fn storage_of(env: &TestEnv, repo: Uuid) -> (String, Option<String>) {
    let repo = env.repo(repo).await;
    (repo.storage, repo.move_to)
}

/// The mirror's fetches never overlap: each ended before the next started. A run its
/// killed worker never finished has no end to compare (an `abandoned` run is closed by
/// the attempt that took over, at that attempt's start).
async fn no_overlap(env: &TestEnv, repo: Uuid) {
    type Span = (
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
    );
    let spans: Vec<Span> = sqlx::query_as(
        "SELECT started_at, finished_at, outcome FROM sync_runs WHERE repo_id = $1
         ORDER BY started_at",
    )
    .bind(repo)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    for pair in spans.windows(2) {
        if let (_, Some(end), outcome) = &pair[0] {
            if outcome.as_deref() != Some("abandoned") {
                assert!(*end <= pair[1].0, "fetches of {repo} overlapped: {spans:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_placed_by_weight_and_each_storage_is_served_by_its_own_workers() {
    const MIRRORS: usize = 200;
    let mut env = TestEnv::new().await;
    env.two_storages(1, 3);
    // each storage's root belongs to its workers' user, and only to it
    for (name, uid) in [("a", UID_A), ("b", UID_B)] {
        let root = env.cfg.storage.root_of(name).unwrap().to_owned();
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let (daemon, ups) = serve(&env, 4);
    let mut workers = Vec::new();
    for (i, (name, uid)) in [("a", UID_A), ("a", UID_A), ("b", UID_B), ("b", UID_B)]
        .into_iter()
        .enumerate()
    {
        let home = env.cfg.storage.root_of(name).unwrap().to_owned();
        workers.push(Proc::spawn_as(
            &env,
            "stasis-worker",
            &format!("worker-{name}{i}.log"),
            &[("STASIS_WORKER_STORAGES", name.to_owned())],
            uid,
            &home,
        ));
    }
    live(&env, &[("a", 2), ("b", 2)]).await;

    let (owner, _) = env.user("fleet", false).await;
    let mut placed: BTreeMap<String, Vec<(Uuid, usize)>> = BTreeMap::new();
    let mut jobs = Vec::new();
    for i in 0..MIRRORS {
        let storage = placement::place(&env.cfg, &env.pool, None)
            .await
            .unwrap()
            .expect("a storage takes the mirror");
        let up = i % ups.len();
        let repo = env
            .mirror_on(
                &storage,
                &owner,
                &format!("m{i}"),
                &daemon.url(&format!("u{up}")),
            )
            .await;
        jobs.push(env.enqueue(repo, SyncReason::Import).await);
        placed.entry(storage).or_default().push((repo, i));
    }
    // weights 1 : 3: 150 of 200 expected on b, binomial sd 6.1; 25 is four of them
    let on_b = placed.get("b").map_or(0, Vec::len);
    println!(
        "placement of {MIRRORS} mirrors by weights 1:3: a {}, b {on_b}",
        MIRRORS - on_b
    );
    assert!((125..=175).contains(&on_b), "b got {on_b} of {MIRRORS}");

    for job in jobs {
        let done = env.finished(job, WAIT).await;
        assert_eq!(done.state, JobState::Done, "{done:?}");
    }
    for (storage, mirrors) in &placed {
        let other = if storage == "a" { "b" } else { "a" };
        for &(_, i) in mirrors {
            let name = format!("m{i}");
            assert_mirrors(
                &env.mirror_path_on(storage, "fleet", &name),
                &ups[i % ups.len()],
            );
            assert!(
                !env.mirror_path_on(other, "fleet", &name).exists(),
                "{name} is on {other} too"
            );
        }
    }
    // every run was a worker of the mirror's storage
    let strays: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.name, s.worker FROM sync_runs s JOIN repositories r ON r.id = s.repo_id
         WHERE NOT EXISTS (SELECT 1 FROM storage_reports p
                           WHERE p.worker = s.worker AND p.storage = r.storage)",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(
        strays.is_empty(),
        "runs by another storage's worker: {strays:?}"
    );
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE outcome <> 'success'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
    for w in &mut workers {
        w.assert_running("worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_without_live_workers_waits_says_why_and_catches_up() {
    const EACH: usize = 5;
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    let (daemon, mut ups) = serve(&env, 2 * EACH);
    let api_port = free_port();
    let metrics_port = free_port();
    let _api = Proc::spawn(
        &env,
        "stasis-api",
        "api.log",
        &[("STASIS_API_LISTEN", format!("127.0.0.1:{api_port}"))],
    );
    let scheduler = Proc::spawn(
        &env,
        "stasis-scheduler",
        "scheduler.log",
        &[("STASIS_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))],
    );
    let _a = worker(&env, "a", "worker-a.log");
    let mut b: Vec<Proc> = (0..2)
        .map(|i| worker(&env, "b", &format!("worker-b{i}.log")))
        .collect();
    live(&env, &[("a", 1), ("b", 2)]).await;

    let (owner, _) = env.user("ops", false).await;
    let mut repos = Vec::new();
    for i in 0..2 * EACH {
        let storage = if i < EACH { "a" } else { "b" };
        let repo = env
            .mirror_on(
                storage,
                &owner,
                &format!("m{i}"),
                &daemon.url(&format!("u{i}")),
            )
            .await;
        let job = env.enqueue(repo, SyncReason::Import).await;
        assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
        repos.push(repo);
    }

    for w in &mut b {
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }
    live(&env, &[("a", 1), ("b", 0)]).await;
    for up in &mut ups {
        up.commit("after b's workers died");
    }
    let mut jobs = Vec::new();
    for &repo in &repos {
        jobs.push(env.enqueue(repo, SyncReason::Manual).await);
    }
    // a's mirrors sync as if nothing happened
    for i in 0..EACH {
        assert_eq!(env.finished(jobs[i], WAIT).await.state, JobState::Done);
        assert_mirrors(&env.mirror_path_on("a", "ops", &format!("m{i}")), &ups[i]);
    }
    // b's wait, and say why
    let http = reqwest::Client::new();
    for (i, &job) in jobs.iter().enumerate().skip(EACH) {
        let url = format!("http://127.0.0.1:{api_port}/api/v1/repos/ops/m{i}/mirror/status");
        let status: serde_json::Value = eventually("the API to answer", WAIT, || async {
            http.get(&url).send().await.ok()?.json().await.ok()
        })
        .await;
        assert_eq!(status["storage"], "b", "{status}");
        assert_eq!(status["sync_state"], "queued", "{status}");
        assert_eq!(
            status["waiting_for_storage"], "storage b has no live worker",
            "{status}"
        );
        assert_eq!(env.job(job).await.state, JobState::Pending);
    }
    // and the gauge the StasisStorageWithoutWorkers alert reads says so
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    const LIVE_B_ZERO: &str = "stasis_storage_live_workers{process=\"scheduler\",storage=\"b\"} 0";
    let mirrors_b = format!("stasis_storage_mirrors{{process=\"scheduler\",storage=\"b\"}} {EACH}");
    let mut seen = String::new();
    for _ in 0..60 {
        seen = match http.get(&metrics).send().await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        if seen.lines().any(|l| l == LIVE_B_ZERO) && seen.lines().any(|l| l == mirrors_b) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let gauges: Vec<&str> = seen
        .lines()
        .filter(|l| l.starts_with("stasis_storage"))
        .collect();
    assert!(
        gauges.contains(&LIVE_B_ZERO),
        "{gauges:?}\n{}",
        scheduler.log_text()
    );
    assert!(gauges.contains(&mirrors_b.as_str()), "{gauges:?}");

    // b's workers back: everything catches up, each job ran once
    let _b_back = worker(&env, "b", "worker-b-back.log");
    for i in EACH..2 * EACH {
        assert_eq!(env.finished(jobs[i], WAIT).await.state, JobState::Done);
        assert_mirrors(&env.mirror_path_on("b", "ops", &format!("m{i}")), &ups[i]);
        let runs = env.runs(jobs[i]).await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].outcome, Some(RunOutcome::Success));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_under_load_and_worker_kills_end_on_the_target_with_nothing_lost() {
    const MIRRORS: usize = 50;
    let mut env = TestEnv::new().await;
    env.two_storages(1, 1);
    env.cfg.worker.concurrency = 4;
    let served = env.dir.path().join("served");
    let mut ups: Vec<Upstream> = (0..MIRRORS)
        .map(|i| {
            let mut up = Upstream::create(served.join(format!("u{i}")));
            up.add_blob("payload.bin", 100_000);
            up
        })
        .collect();
    let daemon = GitDaemon::start(&served);
    // about half a second per clone: kills land in the middle of moves
    let proxy = ThrottledProxy::start(daemon.port, 400_000).await;
    // the stack as it runs: the scheduler leader hands a dead worker's jobs on
    let _scheduler = Proc::spawn(&env, "stasis-scheduler", "scheduler.log", &[]);
    let mut a: Vec<Proc> = (0..2)
        .map(|i| worker(&env, "a", &format!("worker-a{i}.log")))
        .collect();
    let mut b: Vec<Proc> = (0..2)
        .map(|i| worker(&env, "b", &format!("worker-b{i}.log")))
        .collect();
    live(&env, &[("a", 2), ("b", 2)]).await;

    let (owner, _) = env.user("mover", false).await;
    let mut repos = Vec::new();
    let mut imports = Vec::new();
    for i in 0..MIRRORS {
        let repo = env
            .mirror_on("a", &owner, &format!("m{i}"), &proxy.url(&format!("u{i}")))
            .await;
        imports.push(env.enqueue(repo, SyncReason::Import).await);
        repos.push(repo);
    }
    for job in imports {
        assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    }

    let jobs = env.jobs();
    let drained = moves::drain(&env.cfg, &env.pool, &jobs, "a", Some("b"), None, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drained.moving, MIRRORS);
    assert_eq!(drained.remaining, 0);

    // while they move: pushes and "Sync now", and one worker of each storage killed
    let mut requested = HashMap::new();
    for round in 0..40 {
        let i = (round * 7) % MIRRORS;
        ups[i].commit(&format!("push {round}"));
        let job = jobs
            .request(repos[i], SyncReason::Manual)
            .await
            .unwrap()
            .unwrap();
        requested.insert(i, job.job_id);
        if round == 10 {
            for group in [&mut a, &mut b] {
                let mut victim = group.remove(0);
                victim.child.kill().unwrap();
                victim.child.wait().unwrap();
            }
            a.push(worker(&env, "a", "worker-a-spare.log"));
            b.push(worker(&env, "b", "worker-b-spare.log"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // every mirror ends on b (an operator drains again any move that failed)
    eventually("every mirror on b", Duration::from_secs(300), || async {
        let mut left = 0;
        for &repo in &repos {
            match storage_of(&env, repo).await {
                (s, None) if s == "b" => {}
                (_, None) => left += 1,
                (_, Some(_)) => return None,
            }
        }
        if left == 0 {
            return Some(());
        }
        let _ = moves::drain(&env.cfg, &env.pool, &jobs, "a", Some("b"), None, 1000).await;
        None
    })
    .await;

    // then each synced once more, to the upstream's head, on b alone
    let mut last = Vec::new();
    for &repo in &repos {
        last.push(env.enqueue(repo, SyncReason::Manual).await);
    }
    for job in last {
        env.finished(job, WAIT).await;
    }
    eventually("the source copies removed", WAIT, || async {
        (0..MIRRORS)
            .all(|i| !env.mirror_path_on("a", "mover", &format!("m{i}")).exists())
            .then_some(())
    })
    .await;
    for (i, &repo) in repos.iter().enumerate() {
        assert_mirrors(&env.mirror_path_on("b", "mover", &format!("m{i}")), &ups[i]);
        no_overlap(&env, repo).await;
    }
    // every "Sync now" was done, not dropped: still there and done, or gone (a done job
    // goes once its mirror runs again) with a successful check of its mirror begun after
    // it was opened (job ids carry their time)
    for (i, job) in requested {
        match jobs::find(&env.pool, job).await.unwrap() {
            Some(done) => assert!(
                matches!(done.state, JobState::Done),
                "a requested sync ended {:?}",
                done.state
            ),
            None => {
                let (secs, nanos) = job.get_timestamp().expect("a time-ordered id").to_unix();
                let served: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM sync_runs WHERE repo_id = $1
                         AND outcome = 'success'
                         AND COALESCE(last_checked_at, started_at) >= to_timestamp($2))",
                )
                .bind(repos[i])
                .bind(secs as f64 + f64::from(nanos) / 1e9)
                .fetch_one(&env.pool)
                .await
                .unwrap();
                assert!(
                    served,
                    "requested sync {job} of m{i} gone without a check after it"
                );
            }
        }
    }
    let moved: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT repo_id FROM storage_moves WHERE state = 'done' AND to_storage = 'b'",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(moved.len(), MIRRORS);
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM storage_moves WHERE state IN ('pending', 'running')",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(open, 0);
}
