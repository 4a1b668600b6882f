//! The fleet actions and the operator's charts: a bulk sync, attempts per interval, and
//! the dead deliveries Redis holds.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_shared::domain::{JobState, Lane};
use stasis_shared::queue::queue_name;
use stasis_testkit::git::Upstream;

use crate::{ops, WAIT};

/// Every bucket's count of one outcome, added up.
fn sum(activity: &Value, outcome: &str) -> i64 {
    activity["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("no buckets: {activity}"))
        .iter()
        .map(|b| b[outcome].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_sync_queues_each_mirror_and_reports_the_rest_item_by_item() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let _fixed = Upstream::create(o.later.clone());
    let body = json!({ "repos": ["alice/broken", "alice/good", "alice/nope", "nonsense"] });
    let (status, bulk) = o
        .call("POST", "/api/v1/admin/mirrors/sync", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    assert_eq!(
        (bulk["accepted"].as_u64(), bulk["refused"].as_u64()),
        (Some(2), Some(2))
    );
    let results = bulk["results"].as_array().unwrap();
    let repos: Vec<_> = results.iter().map(|r| r["repo"].clone()).collect();
    assert_eq!(repos, body["repos"].as_array().unwrap().clone());
    assert_eq!(results[0]["accepted"]["status"], "syncing", "{bulk}");
    assert_eq!(results[2]["error"]["code"], "not_found", "{bulk}");
    assert_eq!(results[3]["error"]["code"], "invalid_repo", "{bulk}");
    // the failed mirror's sync is its retry: it runs against the upstream now there
    let job = results[0]["accepted"]["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(o.env.finished(job, WAIT).await.state, JobState::Done);
    let (_, status) = o
        .call("GET", "/api/v1/repos/alice/broken/mirror/status", None)
        .await;
    assert_eq!(status["sync_state"], "success", "{status}");

    for (repos, why) in [
        (json!([]), "none"),
        (json!(vec!["alice/good"; 101]), "too many"),
    ] {
        let (status, body) = o
            .call(
                "POST",
                "/api/v1/admin/mirrors/sync",
                Some(json!({ "repos": repos })),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_repos")),
            "{why}: {body}"
        );
    }
    let body = json!({ "repos": ["alice/good"] });
    let (status, _) = o
        .api
        .call(
            "POST",
            "/api/v1/admin/mirrors/sync",
            Some(&o.alice),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activity_counts_each_attempt_once_by_outcome_over_the_hour_and_the_day() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    o.retry_both(&jobs).await;
    for (window, seconds, buckets) in [("hour", 60, 60), ("day", 1800, 48)] {
        let path = format!("/api/v1/admin/activity?window={window}");
        let (status, activity) = o.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{activity}");
        assert_eq!(activity["bucket_seconds"], seconds);
        assert_eq!(
            activity["buckets"].as_array().unwrap().len(),
            buckets,
            "{activity}"
        );
        // three imports that moved refs, one that failed for good (the broken upstream)
        assert_eq!(
            sum(&activity, "synced") + sum(&activity, "unchanged"),
            3,
            "{activity}"
        );
        assert_eq!(sum(&activity, "failed"), 1, "{activity}");
        assert_eq!(
            sum(&activity, "retrying") + sum(&activity, "other"),
            0,
            "{activity}"
        );
        let starts: Vec<chrono::DateTime<chrono::Utc>> = activity["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["start"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(starts
            .windows(2)
            .all(|w| (w[1] - w[0]).num_seconds() == seconds));
        let now = chrono::Utc::now();
        let last = *starts.last().unwrap();
        assert!(
            last <= now && (now - last).num_seconds() < seconds,
            "{last} {now}"
        );
    }
    let (status, body) = o
        .call("GET", "/api/v1/admin/activity?window=week", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activity_and_throughput_count_every_check_a_folded_run_stands_for() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    o.unchanged_syncs(3).await;
    let (_, history) = o
        .call("GET", "/api/v1/repos/alice/good/mirror/history", None)
        .await;
    assert_eq!(
        history["runs"].as_array().map(Vec::len),
        Some(1),
        "the import's run, counting the three checks after it: {history}"
    );
    for window in ["hour", "day"] {
        let path = format!("/api/v1/admin/activity?window={window}");
        let (status, activity) = o.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{activity}");
        // the good import moved refs, the broken one failed, then three checks
        let counted = ["synced", "unchanged", "failed", "retrying", "other"]
            .map(|outcome| sum(&activity, outcome));
        assert_eq!(counted, [1, 3, 1, 0, 0], "{activity}");
    }
    let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(
        (&q["throughput"]["last_1m"], &q["throughput"]["last_1h"]),
        (&json!(5), &json!(5)),
        "two imports and three checks: {q}"
    );
    jobs.worker.stop().await;
}

/// apalis moves a delivery it gives up on into its lane's dead set; the operator sees
/// it with the job it carried and that job's state in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_deliveries_are_listed_with_their_job_and_counted_per_lane() {
    let o = ops().await;
    let (parked, _) = o.park().await;
    let q = queue_name(&o.env.cfg.queue.namespace, "default", Lane::Priority);
    let mut redis = o.env.redis.clone();
    // with no worker to promote it, the delivery waits where every push lands first
    let waiting = format!("{q}:scheduled");
    let ready: Vec<String> = redis.zrange(&waiting, 0, -1).await.unwrap();
    assert_eq!(ready.len(), 1, "the parked import's delivery: {ready:?}");
    let _: () = redis.zrem(&waiting, &ready[0]).await.unwrap();
    let _: () = redis.sadd(format!("{q}:dead"), &ready[0]).await.unwrap();

    let (status, dead) = o.call("GET", "/api/v1/admin/queue/dead", None).await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    assert_eq!(
        dead["deliveries"],
        json!([{ "lane": "priority", "storage": "default", "delivery_id": ready[0], "job_id": parked, "job_state": "pending" }])
    );
    let (_, queue) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(queue["redis_lanes"]["priority"]["dead"], 1, "{queue}");
    assert_eq!(queue["redis_lanes"]["scheduled"]["dead"], 0, "{queue}");
    assert_eq!(queue["redis"]["dead"], 1, "{queue}");
    let (status, _) = o
        .call("GET", "/api/v1/admin/queue/dead?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// An operator empties the dead sets: the deliveries and their payloads leave Redis,
/// the count drops to zero (so the alert on it clears), and the job's record in
/// Postgres stays as it was. Only an admin may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_deliveries_are_purged_by_an_admin_alone() {
    let o = ops().await;
    let (parked, _) = o.park().await;
    let q = queue_name(&o.env.cfg.queue.namespace, "default", Lane::Priority);
    let mut redis = o.env.redis.clone();
    let waiting = format!("{q}:scheduled");
    let ready: Vec<String> = redis.zrange(&waiting, 0, -1).await.unwrap();
    assert_eq!(ready.len(), 1, "the parked import's delivery: {ready:?}");
    let _: () = redis.zrem(&waiting, &ready[0]).await.unwrap();
    let _: () = redis.sadd(format!("{q}:dead"), &ready[0]).await.unwrap();
    // an id whose payload is already gone counts too
    let _: () = redis.sadd(format!("{q}:dead"), "no-payload").await.unwrap();

    let (status, body) = o
        .api
        .call("DELETE", "/api/v1/admin/queue/dead", Some(&o.alice), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, queue) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(queue["redis"]["dead"], 2, "{queue}");

    let (status, purged) = o.call("DELETE", "/api/v1/admin/queue/dead", None).await;
    assert_eq!(
        (status, &purged),
        (StatusCode::OK, &json!({ "removed": 2 }))
    );
    let (_, dead) = o.call("GET", "/api/v1/admin/queue/dead", None).await;
    assert_eq!(dead["deliveries"], json!([]), "{dead}");
    let (_, queue) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(queue["redis"]["dead"], 0, "{queue}");
    let payload: Option<String> = redis.hget(format!("{q}:data"), &ready[0]).await.unwrap();
    assert_eq!(payload, None, "the dead delivery's payload stayed");
    let (_, job) = o
        .call("GET", &format!("/api/v1/admin/jobs/{parked}"), None)
        .await;
    assert_eq!(job["state"], "pending", "{job}");

    let (status, purged) = o.call("DELETE", "/api/v1/admin/queue/dead", None).await;
    assert_eq!((status, purged), (StatusCode::OK, json!({ "removed": 0 })));
}
