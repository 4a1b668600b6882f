//! The repository lease across a worker's death and a Redis that lost its data: taken
//! over once its holder's liveness key lapses (with a higher fence), never while the
//! holder lives; taken back by its holder when its key vanished; fleet slots freed the
//! same way.

use std::time::Duration;

use stasis_shared::liveness;
use stasis_shared::lock::{Leases, Renewal};
use stasis_testkit::TestEnv;
use stasis_worker::slots::Slots;

const TTL: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_is_taken_over_with_a_higher_fence() {
    let env = TestEnv::new().await;
    let ns = &env.cfg.queue.namespace;
    let first = Leases::for_worker(env.redis.clone(), ns, "first");
    let second = Leases::for_worker(env.redis.clone(), ns, "second");
    let alive = liveness::key(ns, "first");
    liveness::beat(&env.redis, &alive, Duration::from_secs(60))
        .await
        .unwrap();

    let key = first.repo_key(uuid::Uuid::new_v4());
    let held = first
        .try_acquire(&key, TTL, 0)
        .await
        .unwrap()
        .expect("free");
    assert!(!held.taken_over);
    assert!(
        second.try_acquire(&key, TTL, 0).await.unwrap().is_none(),
        "taken from a live holder"
    );

    liveness::leave(&env.redis, &alive).await.unwrap();
    let taken = second
        .try_acquire(&key, TTL, 0)
        .await
        .unwrap()
        .expect("taken over");
    assert!(taken.taken_over);
    assert!(taken.fence > held.fence);
    // the old holder, waking up, finds it gone and writes nothing (its fence is older)
    assert_eq!(first.renew(&held, TTL).await.unwrap(), Renewal::Lost);

    // a lease without a named holder (the scheduler's) is never taken over
    let plain = Leases::new(env.redis.clone(), ns);
    let leader = plain
        .try_acquire(&plain.leader_key(), TTL, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(second
        .try_acquire(&leader.key, TTL, 0)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_redis_lost_is_taken_back_above_its_fence() {
    let env = TestEnv::new().await;
    let ns = &env.cfg.queue.namespace;
    let leases = Leases::for_worker(env.redis.clone(), ns, "w");
    let key = leases.repo_key(uuid::Uuid::new_v4());
    let held = leases.try_acquire(&key, TTL, 41).await.unwrap().unwrap();
    assert_eq!(held.fence, 42, "floored at the fence Postgres holds");
    assert_eq!(leases.renew(&held, TTL).await.unwrap(), Renewal::Renewed);

    // Redis restarted empty: the lease and the fence counter are gone
    let () = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{key}:fence"))
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    assert_eq!(leases.renew(&held, TTL).await.unwrap(), Renewal::Reclaimed);
    assert_eq!(leases.renew(&held, TTL).await.unwrap(), Renewal::Renewed);
    // a later holder still gets a higher fence, although the counter was lost
    leases.release(&held).await.unwrap();
    let next = leases.try_acquire(&key, TTL, 0).await.unwrap().unwrap();
    assert!(
        next.fence > held.fence,
        "{} after {}",
        next.fence,
        held.fence
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_slots_are_freed_for_others() {
    let env = TestEnv::new().await;
    let ns = &env.cfg.queue.namespace;
    let alive = liveness::key(ns, "dying");
    liveness::beat(&env.redis, &alive, Duration::from_secs(60))
        .await
        .unwrap();
    let dying = Slots::new(env.redis.clone(), ns, 1, 0).for_worker("dying");
    let other = Slots::new(env.redis.clone(), ns, 1, 0).for_worker("other");

    let slot = dying.try_acquire("example.org", TTL).await.unwrap();
    assert!(slot.is_some_and(|s| s.holds_any()));
    assert!(
        other
            .try_acquire("example.org", TTL)
            .await
            .unwrap()
            .is_none(),
        "cap of 1"
    );
    liveness::leave(&env.redis, &alive).await.unwrap();
    assert!(
        other
            .try_acquire("example.org", TTL)
            .await
            .unwrap()
            .is_some(),
        "the dead worker's slot was not freed"
    );
}
