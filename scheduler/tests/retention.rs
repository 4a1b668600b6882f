//! Bounded history: the leader's retention pass keeps each mirror's newest runs and its
//! last failed one, drops what is older than `history.max_age`, jobs with their last
//! runs (and jobs that never had one once older than `history.max_age`), and old
//! delivered notifications. History is inserted with SQL: thousands of
//! real syncs would only make the test slow.

use std::collections::BTreeSet;
use std::time::Duration;

use stasis_scheduler::retention::{enforce, Deleted, Progress};
use stasis_testkit::TestEnv;
use uuid::Uuid;

/// A finished job with one run, `minutes_ago`; returns the run's id.
async fn run(env: &TestEnv, repo: Uuid, minutes_ago: i64, outcome: &str) -> i64 {
    let job = Uuid::new_v4();
    let state = if outcome == "failed" {
        "failed"
    } else {
        "done"
    };
    sqlx::query(
        "INSERT INTO sync_jobs (id, repo_id, reason, state, max_attempts, attempts,
             enqueued_at, started_at, finished_at)
         VALUES ($1, $2, 'scheduled', $3, 5, 1, now() - make_interval(mins => $4),
             now() - make_interval(mins => $4), now() - make_interval(mins => $4))",
    )
    .bind(job)
    .bind(repo)
    .bind(state)
    .bind(minutes_ago as i32)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query_scalar(
        "INSERT INTO sync_runs (repo_id, job_id, attempt, worker, started_at, finished_at, outcome)
         VALUES ($1, $2, 1, 'w', now() - make_interval(mins => $3),
             now() - make_interval(mins => $3), $4)
         RETURNING id",
    )
    .bind(repo)
    .bind(job)
    .bind(minutes_ago as i32)
    .bind(outcome)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

async fn runs_of(env: &TestEnv, repo: Uuid) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>("SELECT id FROM sync_runs WHERE repo_id = $1")
        .bind(repo)
        .fetch_all(&env.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.pool).await.unwrap()
}

#[tokio::test]
async fn history_is_bounded_per_mirror_and_by_age_keeping_the_last_failure() {
    let mut env = TestEnv::new().await;
    env.cfg.history.max_runs_per_mirror = 50;
    env.cfg.history.max_age = Duration::from_secs(90 * 24 * 3600);
    let (alice, _) = env.user("alice", false).await;
    let busy = env.mirror(&alice, "busy", "file:///up/busy").await;
    let quiet = env.mirror(&alice, "quiet", "file:///up/quiet").await;

    // busy: 80 runs a minute apart, the 10th (long gone from the newest 50) failed
    let mut busy_runs = Vec::new();
    for i in 0..80 {
        let outcome = if i == 9 { "failed" } else { "success" };
        busy_runs.push(run(&env, busy, 200 - i, outcome).await);
    }
    let last_failure = busy_runs[9];
    // quiet: a few recent runs, and two older than max_age: its last failure and a success
    let days = 24 * 60;
    let quiet_failure = run(&env, quiet, 120 * days, "failed").await;
    let quiet_old = run(&env, quiet, 100 * days, "success").await;
    for i in 0..5 {
        run(&env, quiet, 10 + i, "success").await;
    }
    // discarded jobs that never had a run: one older than max_age, one recent
    for days_ago in [100, 1] {
        sqlx::query(
            "INSERT INTO sync_jobs (id, repo_id, reason, state, max_attempts, enqueued_at,
                 finished_at)
             VALUES (gen_random_uuid(), $1, 'manual', 'dead', 5,
                 now() - make_interval(days => $2), now() - make_interval(days => $2))",
        )
        .bind(quiet)
        .bind(days_ago)
        .execute(&env.pool)
        .await
        .unwrap();
    }
    for (delivered_days_ago, pending) in [(Some(100), false), (Some(1), false), (None, true)] {
        sqlx::query(
            "INSERT INTO notifications (repo_id, event, url, payload, delivered_at, created_at)
             VALUES ($1, 'failed', 'http://example.com/', '{}',
                 now() - make_interval(days => $2), now() - interval '200 days')",
        )
        .bind(quiet)
        .bind(delivered_days_ago.filter(|_| !pending))
        .execute(&env.pool)
        .await
        .unwrap();
    }

    let mut progress = Progress::default();
    let deleted = enforce(&env.cfg, &env.pool, &mut progress).await.unwrap();
    assert_eq!(
        deleted,
        Deleted {
            runs: 30 + 1,
            jobs: 30 + 1 + 1,
            notifications: 1,
            unchanged_checks: 0,
        }
    );

    let kept = runs_of(&env, busy).await;
    assert_eq!(kept.len(), 50, "at most max_runs_per_mirror runs");
    assert!(kept.contains(&last_failure), "the last failed run is kept");
    let newest: BTreeSet<i64> = busy_runs[31..].iter().copied().collect();
    assert_eq!(
        kept.difference(&newest).copied().collect::<Vec<_>>(),
        vec![last_failure],
        "the newest 49 beside it"
    );
    let quiet_kept = runs_of(&env, quiet).await;
    assert_eq!(quiet_kept.len(), 6);
    assert!(quiet_kept.contains(&quiet_failure));
    assert!(!quiet_kept.contains(&quiet_old));

    // every job left has its run but the recent discarded one; the mirror's row is
    // untouched
    assert_eq!(count(&env, "SELECT count(*) FROM sync_jobs").await, 57);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sync_jobs j
             WHERE NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.job_id = j.id)"
        )
        .await,
        1
    );
    assert_eq!(count(&env, "SELECT count(*) FROM notifications").await, 2);
    assert_eq!(env.repo(busy).await.id, busy);

    // nothing more to do
    assert_eq!(
        enforce(&env.cfg, &env.pool, &mut progress).await.unwrap(),
        Deleted::default()
    );

    // later passes look only at mirrors synced since: busy's new runs push out its
    // oldest, while quiet, untouched, is not looked at even under a lower cap (which a
    // new leader's first pass applies)
    for i in 0..3 {
        run(&env, busy, 3 - i, "success").await;
    }
    env.cfg.history.max_runs_per_mirror = 4;
    let deleted = enforce(&env.cfg, &env.pool, &mut progress).await.unwrap();
    assert_eq!(runs_of(&env, busy).await.len(), 4, "{deleted:?}");
    assert!(runs_of(&env, busy).await.contains(&last_failure));
    assert_eq!(runs_of(&env, quiet).await.len(), 6, "not looked at");
    enforce(&env.cfg, &env.pool, &mut Progress::default())
        .await
        .unwrap();
    assert_eq!(
        runs_of(&env, quiet).await.len(),
        4,
        "a first pass looks at every mirror"
    );
}

/// A finished job of no run, as a folded run's latest check leaves it, `minutes_ago`.
async fn job_of_a_folded_check(env: &TestEnv, repo: Uuid, minutes_ago: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO sync_jobs (id, repo_id, reason, state, max_attempts, attempts,
             enqueued_at, started_at, finished_at)
         VALUES (gen_random_uuid(), $1, 'scheduled', 'done', 5, 1,
             now() - make_interval(mins => $2), now() - make_interval(mins => $2),
             now() - make_interval(mins => $2))
         RETURNING id",
    )
    .bind(repo)
    .bind(minutes_ago)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

/// Folds `checks` unchanged checks into `run`, the latest of them `job`'s.
async fn fold(env: &TestEnv, run: i64, checks: i32, job: Uuid) {
    sqlx::query(
        "UPDATE sync_runs SET unchanged = true, checks = $2, last_job_id = $3,
             last_checked_at = (SELECT started_at FROM sync_jobs WHERE id = $3)
         WHERE id = $1",
    )
    .bind(run)
    .bind(checks)
    .bind(job)
    .execute(&env.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_folded_run_is_one_row_and_goes_with_the_job_of_its_latest_check() {
    let mut env = TestEnv::new().await;
    env.cfg.history.max_runs_per_mirror = 3;
    let (alice, _) = env.user("alice", false).await;
    let repo = env.mirror(&alice, "m", "file:///up/m").await;
    // the oldest run stood for 50 unchanged checks, the newest stands for 1000 so far
    let oldest = run(&env, repo, 400, "success").await;
    let oldest_latest_job = job_of_a_folded_check(&env, repo, 310).await;
    fold(&env, oldest, 50, oldest_latest_job).await;
    let kept = [
        run(&env, repo, 300, "success").await,
        run(&env, repo, 200, "failed").await,
        run(&env, repo, 100, "success").await,
    ];
    let newest_latest_job = job_of_a_folded_check(&env, repo, 2).await;
    fold(&env, kept[2], 1000, newest_latest_job).await;
    // counts of unchanged checks: one second a day and more ago, one an hour ago
    sqlx::query(
        "INSERT INTO unchanged_checks (second, shard, checks) VALUES
             (date_trunc('second', now() - interval '26 hours'), 3, 40),
             (date_trunc('second', now() - interval '1 hour'), 3, 2)",
    )
    .execute(&env.pool)
    .await
    .unwrap();

    let deleted = enforce(&env.cfg, &env.pool, &mut Progress::default())
        .await
        .unwrap();
    assert_eq!(
        deleted,
        Deleted {
            runs: 1,
            jobs: 2,
            notifications: 0,
            unchanged_checks: 1,
        },
        "the folded run counts as one of the newest 3"
    );
    assert_eq!(runs_of(&env, repo).await, kept.into_iter().collect());
    let jobs: BTreeSet<Uuid> = sqlx::query_scalar("SELECT id FROM sync_jobs")
        .fetch_all(&env.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(!jobs.contains(&oldest_latest_job), "went with its run");
    assert!(jobs.contains(&newest_latest_job), "its run is kept");
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    assert_eq!(
        count(&env, "SELECT sum(checks)::bigint FROM unchanged_checks").await,
        2,
        "the last day's counts are kept"
    );
}
