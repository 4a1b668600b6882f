//! A worker killed with SIGKILL while it holds four syncs: each runs again on another
//! worker within the heartbeat window (`queue.heartbeat_interval × missed_heartbeats`,
//! 5 s × 2 by default) plus a few seconds, not when its repository lock's TTL (30 s)
//! runs out. Measured over ten kills, at the defaults.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stasis_shared::db::workers;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::process::Proc;
use stasis_testkit::proxy::ThrottledProxy;
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

const SYNCS: usize = 4;
const KILLS: usize = 10;
const WAIT: Duration = Duration::from_secs(60);

/// The worker running the latest attempt of `job`, once it started after `since`.
async fn running_since(env: &TestEnv, job: Uuid, since: DateTime<Utc>) -> (String, DateTime<Utc>) {
    eventually(&format!("job {job} to run again"), WAIT, || async {
        let last = env.runs(job).await.pop()?;
        (last.started_at > since && last.finished_at.is_none())
            .then_some((last.worker, last.started_at))
    })
    .await
}

/// Waits for a worker started after `since` to register.
async fn registered(env: &TestEnv, since: DateTime<Utc>) {
    eventually("the new worker to register", WAIT, || async {
        let alive = workers::alive(&env.pool, WAIT).await.ok()?;
        alive.iter().any(|w| w.started_at > since).then_some(())
    })
    .await;
}

/// A spread of delays in [0, `below`) ms, the same on every run.
fn rand_ms(i: usize, below: u64) -> u64 {
    (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        % below
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_syncs_run_again_within_the_heartbeat_window() {
    let mut env = TestEnv::new().await;
    // the defaults this is about, not the tests' short ones
    env.cfg.queue.heartbeat_interval = Duration::from_secs(5);
    env.cfg.queue.missed_heartbeats = 2;
    env.cfg.sync.lock_ttl = Duration::from_secs(30);
    env.cfg.worker.concurrency = SYNCS;

    // fetches of 20 s: each is still running when its worker is killed
    let served = env.dir.path().join("served");
    let mut ups = Vec::new();
    for i in 0..SYNCS {
        let mut up = Upstream::create(served.join(format!("m{i}")));
        up.add_blob("big.bin", 1_000_000);
        ups.push(up);
    }
    let daemon = GitDaemon::start(&served);
    let proxy = ThrottledProxy::start(daemon.port, 50_000).await;
    let (owner, _) = env.user("kim", false).await;
    let mut jobs = Vec::new();
    for i in 0..SYNCS {
        let repo = env
            .mirror(&owner, &format!("m{i}"), &proxy.url(&format!("m{i}")))
            .await;
        jobs.push(repo);
    }
    let _scheduler = Proc::spawn(&env, "stasis-scheduler", "scheduler.log", &[]);
    let spawned = Utc::now();
    let mut victim = Proc::spawn(&env, "stasis-worker", "worker0.log", &[]);
    registered(&env, spawned).await;
    for repo in jobs.iter_mut() {
        *repo = env.enqueue(*repo, SyncReason::Import).await;
    }
    for &job in &jobs {
        running_since(&env, job, DateTime::<Utc>::MIN_UTC).await;
    }

    let mut waits = Vec::new();
    for kill in 1..=KILLS {
        // the next victim, ready before this one dies
        let spawned = Utc::now();
        let spare = Proc::spawn(&env, "stasis-worker", &format!("worker{kill}.log"), &[]);
        registered(&env, spawned).await;
        let mut victim_name = None;
        for &job in &jobs {
            victim_name = env.runs(job).await.pop().map(|r| r.worker);
        }
        // at a random point of the victim's 5 s heartbeat cycle, as a real crash comes
        let phase = Duration::from_millis(rand_ms(kill, 5_000));
        tokio::time::sleep(phase).await;
        victim.child.kill().expect("SIGKILL");
        victim.child.wait().unwrap();
        let killed_at = Utc::now();
        for &job in &jobs {
            let (worker, started) = running_since(&env, job, killed_at).await;
            assert_ne!(
                Some(&worker),
                victim_name.as_ref(),
                "rerun on the dead worker"
            );
            waits.push((started - killed_at).to_std().unwrap_or_default());
        }
        victim = spare;
    }

    waits.sort();
    let p = |q: f64| waits[((waits.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "SIGKILL of a worker holding {SYNCS} syncs, {KILLS} kills: rerun after p50 {:.1?}, p95 {:.1?}, max {:.1?}",
        p(0.5),
        p(0.95),
        waits.last().unwrap()
    );
    assert!(
        p(0.95) < Duration::from_secs(15),
        "p95 {:?}: {waits:?}",
        p(0.95)
    );

    // and the last worker brings every mirror to its upstream's head
    for &job in &jobs {
        assert_eq!(
            env.finished(job, Duration::from_secs(180)).await.state,
            JobState::Done
        );
    }
    for (i, up) in ups.iter().enumerate() {
        assert_mirrors(&env.mirror_path("kim", &format!("m{i}")), up);
    }
    victim.assert_running("the last worker");
}
