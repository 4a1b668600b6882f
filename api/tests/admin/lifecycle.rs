//! Discarding and retrying jobs: a discarded job is dead and its delivery gone, a failed
//! or dead job retried runs again, and a job in neither state is refused.

use reqwest::StatusCode;
use serde_json::json;
use stasis_testkit::git::assert_mirrors;

use crate::{ops, WAIT};
use stasis_shared::domain::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_discarded_while_it_waits_is_dead_gone_from_redis_and_once_only() {
    let o = ops().await;
    let (parked, pending) = o.park().await;
    assert_eq!(pending["jobs"][0]["repo"], "alice/parked");
    assert_eq!(o.env.waiting_deliveries().await, 1);
    let (status, body) = o.discard(&parked).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["job"]["state"], "dead");
    assert_eq!(body["deliveries_removed"], 1);
    assert_eq!(o.env.waiting_deliveries().await, 0);
    let (_, repo) = o
        .api
        .call("GET", "/api/v1/repos/alice/parked", Some(&o.alice), None)
        .await;
    assert_eq!(
        repo["sync_status"], "idle",
        "a discarded import leaves the repo idle"
    );
    let (status, body) = o.discard(&parked).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_retried_once_its_upstream_appears_runs_again_and_succeeds() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let broken_job = &jobs.broken_job;

    let fixed = stasis_testkit::git::Upstream::create(o.later.clone());
    let (status, body) = o.retry(broken_job).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["state"], "pending");
    let job = o.env.finished(broken_job.parse().unwrap(), WAIT).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    assert_mirrors(&o.env.mirror_path("alice", "broken"), &fixed);
    let (_, shown) = o
        .call("GET", &format!("/api/v1/admin/jobs/{broken_job}"), None)
        .await;
    let outcomes: Vec<_> = shown["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("failed"), json!("success")]);
    // a done job cannot be retried
    let (status, _) = o.retry(broken_job).await;
    assert_eq!(status, StatusCode::CONFLICT);
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_discarded_job_can_be_retried_and_completes() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    // dead → pending
    let (status, _) = o.retry(&jobs.parked).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        o.env
            .finished(jobs.parked.parse().unwrap(), WAIT)
            .await
            .state,
        JobState::Done
    );
    jobs.worker.stop().await;
}
