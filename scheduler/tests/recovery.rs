//! The leader's recovery pass on the states it exists for: running jobs of a worker
//! that is dead in both Postgres and Redis (and not of one silent in only one), and
//! pending jobs whose deliveries Redis lost, delivered again exactly once.

use std::time::Duration;

use stasis_scheduler::recovery::{Recovered, Recovery};
use stasis_shared::db::workers;
use stasis_shared::domain::{JobState, SyncReason};
use stasis_shared::liveness;
use stasis_testkit::git::Upstream;
use stasis_testkit::TestEnv;
use uuid::Uuid;

async fn jobs_of(env: &TestEnv, count: usize) -> Vec<Uuid> {
    let (owner, _) = env.user("olga", false).await;
    let mut jobs = Vec::new();
    for i in 0..count {
        let up = Upstream::create(env.dir.path().join(format!("up{i}")));
        let repo = env.mirror(&owner, &format!("m{i}"), &up.url()).await;
        jobs.push(env.enqueue(repo, SyncReason::Manual).await);
    }
    jobs
}

async fn pass(env: &TestEnv, recovery: &mut Recovery) -> Recovered {
    recovery
        .pass(&env.cfg, &env.pool, &env.redis, &env.jobs())
        .await
        .expect("recovery pass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_of_a_worker_dead_in_both_backends_are_delivered_again() {
    let env = TestEnv::new().await;
    let jobs = jobs_of(&env, 3).await;
    env.forget_redis().await;
    let mut recovery = Recovery::default();
    // whatever the first pass does about the forgotten deliveries, it re-delivers none:
    // every job is running
    let workers = ["dead", "silent-in-redis", "silent-in-postgres"];
    for (job, worker) in jobs.iter().zip(workers) {
        sqlx::query("UPDATE sync_jobs SET state = 'running', attempts = 1, worker = $2, started_at = now() WHERE id = $1")
            .bind(job)
            .bind(worker)
            .execute(&env.pool)
            .await
            .unwrap();
    }
    // one beat in Postgres only, one in Redis only
    workers::beat(
        &env.pool,
        &workers::Registration {
            name: workers[1],
            host: "h",
            pid: 1,
            concurrency: 1,
        },
    )
    .await
    .unwrap();
    let key = liveness::key(&env.cfg.queue.namespace, workers[2]);
    liveness::beat(&env.redis, &key, Duration::from_secs(60))
        .await
        .unwrap();

    let done = pass(&env, &mut recovery).await;
    assert_eq!(
        done,
        Recovered {
            rescued: 1,
            redelivered: 0
        }
    );
    assert_eq!(env.job(jobs[0]).await.state, JobState::Pending);
    assert_eq!(env.job(jobs[1]).await.state, JobState::Running);
    assert_eq!(env.job(jobs[2]).await.state, JobState::Running);
    assert_eq!(
        env.waiting_deliveries().await,
        1,
        "one fresh delivery, for the dead worker's job"
    );

    // the next pass finds nothing more to do
    assert_eq!(pass(&env, &mut recovery).await, Recovered::default());
    assert_eq!(env.waiting_deliveries().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_jobs_whose_deliveries_redis_lost_are_delivered_again_once() {
    let env = TestEnv::new().await;
    let jobs = jobs_of(&env, 3).await;
    let mut recovery = Recovery::default();
    // a leader's first look: every delivery is there, nothing is pushed twice
    assert_eq!(pass(&env, &mut recovery).await, Recovered::default());
    assert_eq!(env.waiting_deliveries().await, 3);

    // Redis loses everything; one job is delivered again meanwhile (a worker's retry)
    env.forget_redis().await;
    let repo: Uuid = sqlx::query_scalar("SELECT repo_id FROM sync_jobs WHERE id = $1")
        .bind(jobs[0])
        .fetch_one(&env.pool)
        .await
        .unwrap();
    env.jobs()
        .push(vec![stasis_shared::domain::SyncMirror {
            job_id: jobs[0],
            repo_id: repo,
            reason: SyncReason::Manual,
        }])
        .await
        .unwrap();

    let done = pass(&env, &mut recovery).await;
    assert_eq!(
        done,
        Recovered {
            rescued: 0,
            redelivered: 2
        }
    );
    // the two lost deliveries wait in Postgres for the dispatcher, which admits them
    let waiting = stasis_shared::db::waiting::count(&env.pool).await.unwrap();
    assert_eq!(
        waiting.due, 2,
        "the jobs whose deliveries were lost wait for a fresh one"
    );
    assert_eq!(env.waiting_deliveries().await, 1);
    assert_eq!(env.jobs().dispatch().await.unwrap(), 2);
    assert_eq!(
        env.waiting_deliveries().await,
        3,
        "one delivery per pending job"
    );
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_jobs WHERE delivery_epoch < current_redis_epoch()",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        stale, 0,
        "every job is recorded as delivered in the new epoch"
    );

    assert_eq!(pass(&env, &mut recovery).await, Recovered::default());
    assert_eq!(env.waiting_deliveries().await, 3);
}
