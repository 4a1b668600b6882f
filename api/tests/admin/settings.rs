//! Run-time settings an operator changes without a restart: pausing the scheduler and
//! overriding the sync interval.

use reqwest::StatusCode;
use serde_json::json;

use crate::ops;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_the_scheduler_shows_in_the_queue_overview_until_resumed() {
    let o = ops().await;
    let (status, body) = o.call("POST", "/api/v1/admin/scheduler/pause", None).await;
    assert_eq!(
        (status, body["paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(q["scheduler"]["paused"], true);
    let (status, body) = o.call("POST", "/api/v1/admin/scheduler/resume", None).await;
    assert_eq!(
        (status, body["paused"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    assert_eq!(q["scheduler"]["paused"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_interval_is_overridden_checked_and_cleared_at_run_time() {
    let o = ops().await;
    let (status, body) = o
        .call(
            "PUT",
            "/api/v1/admin/mirror/config",
            Some(json!({ "sync_interval": "30m" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["seconds"].as_u64(), body["source"].as_str()),
        (Some(1800), Some("override"))
    );
    for bad in [
        json!({ "sync_interval": "soon" }),
        json!({ "sync_interval": "5s" }),
    ] {
        let (status, body) = o
            .call("PUT", "/api/v1/admin/mirror/config", Some(bad))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_interval"))
        );
    }
    let (_, body) = o
        .call(
            "PUT",
            "/api/v1/admin/mirror/config",
            Some(json!({ "sync_interval": null })),
        )
        .await;
    assert_eq!(body["source"], "config");
}
