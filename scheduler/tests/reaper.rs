//! The reaper against the stuck states it exists for, made the way production makes
//! them: deliveries lost with Redis's data, a worker gone mid-sync, a mirror left
//! `syncing` with no job. Each is repaired and then synced by a real worker; a sync
//! that still holds its lock is left alone.

use std::time::Duration;

use stasis_scheduler::reaper::{reap, Reaped};
use stasis_shared::domain::{JobState, SyncReason, SyncStatus};
use stasis_shared::lock::Leases;
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_deliveries_dead_workers_and_orphaned_statuses_are_repaired() {
    let mut env = TestEnv::new().await;
    env.cfg.scheduler.stuck_after = Duration::from_secs(1);
    let (owner, _) = env.user("rita", false).await;
    let mut ups = Vec::new();
    let mut repos = Vec::new();
    for name in ["lost", "abandoned", "orphaned", "busy"] {
        let up = Upstream::create(env.dir.path().join(name));
        repos.push(env.mirror(&owner, name, &up.url()).await);
        ups.push(up);
    }
    let [lost, abandoned, orphaned, busy] = repos[..] else {
        unreachable!()
    };

    // a pending job whose delivery Redis lost
    let lost_job = env.enqueue(lost, SyncReason::Manual).await;
    // a job a dead worker left running, and one whose worker still holds the lock
    let abandoned_job = env.enqueue(abandoned, SyncReason::Manual).await;
    let busy_job = env.enqueue(busy, SyncReason::Manual).await;
    env.forget_redis().await;
    // due an hour ago: long past `stuck_after`
    sqlx::query("UPDATE sync_jobs SET run_at = now() - interval '1 hour' WHERE id = $1")
        .bind(lost_job)
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE sync_jobs SET state = 'running', attempts = 1, started_at = now() - interval '1 hour'
         WHERE id = ANY($1)",
    )
    .bind([abandoned_job, busy_job])
    .execute(&env.pool)
    .await
    .unwrap();
    let leases = Leases::new(env.redis.clone(), &env.cfg.queue.namespace);
    let held = leases
        .try_acquire(&leases.repo_key(busy), Duration::from_secs(60), 0)
        .await
        .unwrap()
        .expect("lock for the busy repository");
    // a mirror left showing `syncing` with no job at all
    sqlx::query(
        "UPDATE repositories SET sync_status = 'syncing', updated_at = now() - interval '1 hour'
         WHERE id = $1",
    )
    .bind(orphaned)
    .execute(&env.pool)
    .await
    .unwrap();

    let reaped = reap(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(
        reaped,
        Reaped {
            running: 1,
            pending: 1,
            repositories: 1
        },
        "the lost and abandoned jobs and the orphaned mirror, not the locked sync"
    );
    assert_eq!(env.job(busy_job).await.state, JobState::Running);

    // a second pass finds deliveries waiting now and touches nothing
    let again = reap(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .unwrap();
    assert_eq!(again, Reaped::default());

    let worker = env.spawn_worker();
    for job in [lost_job, abandoned_job] {
        assert_eq!(env.finished(job, WAIT).await.state, JobState::Done);
    }
    stasis_testkit::eventually("the orphaned mirror to sync", WAIT, || async {
        (env.repo(orphaned).await.sync_status == SyncStatus::Success).then_some(())
    })
    .await;
    for (i, name) in ["lost", "abandoned", "orphaned"].into_iter().enumerate() {
        assert_mirrors(&env.mirror_path("rita", name), &ups[i]);
    }
    assert_eq!(
        env.job(busy_job).await.state,
        JobState::Running,
        "its lock is still held"
    );
    leases.release(&held).await.unwrap();
    worker.stop().await;
}
