//! The queue overview and a mirror's history, after the three jobs all ran to success.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use stasis_shared::scheduler_status::{self, SchedulerStatus};

use crate::{ops, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_overview_counts_jobs_attempts_and_workers() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    o.retry_both(&jobs).await;

    let (status, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["jobs"]["done"], 3, "{q}");
    assert_eq!(
        (q["jobs"]["pending"].as_i64(), q["jobs"]["failed"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(q["throughput"]["last_1h"], 4, "four attempts finished: {q}");
    assert_eq!(q["workers"].as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q["workers"][0]["jobs_in_flight"], 0);
    assert_eq!(q["workers"][0]["concurrency"], o.env.cfg.worker.concurrency);
    assert!(q["oldest_pending_age_seconds"].is_null());
    assert_eq!(q["scheduler"]["sync_interval"]["source"], "config");
    assert!(
        q["scheduler"]["enabled"].is_null(),
        "no scheduler leads, so nobody says whether scheduled syncs run: {q}"
    );
    jobs.worker.stop().await;
}

/// Whether scheduled syncs run is the leading scheduler's setting, not the API's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_leading_scheduler_s_mirror_enabled() {
    let o = ops().await;
    assert!(o.env.cfg.mirror.enabled, "the API's own config has it on");
    for enabled in [false, true] {
        let leader = SchedulerStatus {
            leader: "scheduler-1".into(),
            enabled,
            last_tick_at: None,
            next_tick_at: None,
        };
        let ns = &o.env.cfg.queue.namespace;
        scheduler_status::publish(&o.env.redis, ns, &leader, Duration::from_secs(60))
            .await
            .unwrap();
        let (status, q) = o.call("GET", "/api/v1/admin/queue", None).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert_eq!(
            (&q["scheduler"]["enabled"], &q["scheduler"]["leader"]),
            (&json!(enabled), &json!("scheduler-1"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_s_history_is_newest_first() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    o.retry_both(&jobs).await;
    let (_, history) = o
        .api
        .call(
            "GET",
            "/api/v1/repos/alice/broken/mirror/history?limit=1",
            None,
            None,
        )
        .await;
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["outcome"], "success", "newest first: {history}");
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_and_status_show_unchanged_checks_in_the_run_before_them_and_the_latest_check() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let checks = o.unchanged_syncs(3).await;
    let latest = o.env.job(checks[2]).await.started_at.expect("started");
    let at = |v: &serde_json::Value| v.as_str().map(|s| s.parse::<DateTime<Utc>>().unwrap());

    let path = "/api/v1/repos/alice/good/mirror/history";
    let (_, history) = o.api.call("GET", path, None, None).await;
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{history}");
    let import = &runs[0];
    assert_eq!(
        (&import["outcome"], &import["unchanged"], &import["checks"]),
        (&json!("success"), &json!(false), &json!(4)),
        "the import and the three checks after it: {history}"
    );
    assert_eq!(at(&import["last_checked_at"]), Some(latest), "{history}");
    assert!(
        at(&import["last_checked_at"]) > at(&import["started_at"]),
        "{history}"
    );

    let path = "/api/v1/repos/alice/good/mirror/status";
    let (_, status) = o.api.call("GET", path, None, None).await;
    assert_eq!(at(&status["last_attempt_at"]), Some(latest), "{status}");
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_limit_of_zero_is_refused() {
    let o = ops().await;
    o.import("broken", format!("file://{}", o.later.display()))
        .await;
    let (status, _) = o
        .api
        .call(
            "GET",
            "/api/v1/repos/alice/broken/mirror/history?limit=0",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_worker_leaves_the_registry() {
    let o = ops().await;
    let worker = o.env.spawn_worker();
    stasis_testkit::eventually("the worker to register", WAIT, || async {
        let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
        (q["workers"].as_array()?.len() == 1).then_some(())
    })
    .await;
    worker.stop().await;
    let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(
        q["workers"].as_array().unwrap().len(),
        0,
        "a stopped worker leaves the registry"
    );
}
