//! Freshness as the leader samples it: a mirror is overdue once it is past its next sync
//! by more than its interval (its own, else the default); paused mirrors and those due
//! within an interval are not.

use std::time::Duration;

use stasis_scheduler::freshness::overdue;
use stasis_testkit::TestEnv;
use uuid::Uuid;

async fn due(env: &TestEnv, repo: Uuid, ago_secs: i64, own_interval: Option<i32>, enabled: bool) {
    sqlx::query(
        "UPDATE repositories SET next_sync_at = now() - make_interval(secs => $2),
                sync_interval_secs = $3, mirror_enabled = $4
         WHERE id = $1",
    )
    .bind(repo)
    .bind(ago_secs as f64)
    .bind(own_interval)
    .bind(enabled)
    .execute(&env.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_past_their_next_sync_by_more_than_an_interval_are_overdue() {
    let env = TestEnv::new().await;
    let (owner, _) = env.user("fresh", false).await;
    let url = "https://example.invalid/x.git";
    let hour = Duration::from_secs(3600);
    let min = Duration::from_secs(60);

    let none = overdue(&env.pool, hour, min).await.unwrap();
    assert_eq!(none, (0, 0.0), "no mirror, none overdue");

    // 2h late on its own 30m interval: overdue
    let own = env.mirror(&owner, "own-interval", url).await;
    due(&env, own, 7200, Some(1800), true).await;
    // 90m late on the default hour: overdue
    let default = env.mirror(&owner, "default-interval", url).await;
    due(&env, default, 5400, None, true).await;
    // 40m late on the default hour: due, not overdue
    let late = env.mirror(&owner, "just-late", url).await;
    due(&env, late, 2400, None, true).await;
    // 90m late on its own 2h interval: not overdue
    let slow = env.mirror(&owner, "slow-interval", url).await;
    due(&env, slow, 5400, Some(7200), true).await;
    // 3h late but paused by its owner: nobody waits for it
    let paused = env.mirror(&owner, "paused", url).await;
    due(&env, paused, 10800, None, false).await;

    let (count, oldest) = overdue(&env.pool, hour, min).await.unwrap();
    assert_eq!(count, 2);
    assert!(
        (7200.0..7260.0).contains(&oldest),
        "oldest overdue {oldest}s"
    );
}
