//! Operator endpoints over HTTP, on jobs seeded through the real pipeline: a good
//! upstream, a failing one, and a job discarded before any worker ran.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::{eventually, TestEnv};
use uuid::Uuid;

mod common;

use common::Api;

const WAIT: Duration = Duration::from_secs(60);

fn job_ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs array")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_list_show_retry_and_discard_jobs() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let (_, alice) = env.user("alice", false).await;
    let (_, root) = env.user("root", true).await;
    let good = Upstream::create(env.dir.path().join("good"));
    let later = env.dir.path().join("later");
    let admin = Some(root.as_str());

    // A job discarded while it waits: dead in Postgres, gone from Redis.
    let import =
        |name: &str, url: String| json!({ "name": name, "clone_url": url, "mirror": true });
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&alice),
            Some(import("parked", good.url())),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, pending) = api
        .call("GET", "/api/v1/admin/jobs?state=pending", admin, None)
        .await;
    let parked = job_ids(&pending);
    assert_eq!(parked.len(), 1, "{pending}");
    let parked = &parked[0];
    assert_eq!(pending["jobs"][0]["repo"], "alice/parked");
    assert_eq!(env.waiting_deliveries().await, 1);
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{parked}/discard"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["job"]["state"], "dead");
    assert_eq!(body["deliveries_removed"], 1);
    assert_eq!(env.waiting_deliveries().await, 0);
    let (_, repo) = api
        .call("GET", "/api/v1/repos/alice/parked", Some(&alice), None)
        .await;
    assert_eq!(
        repo["sync_status"], "idle",
        "a discarded import leaves the repo idle"
    );
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{parked}/discard"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    // One good and one failing mirror through a real worker.
    let worker = env.spawn_worker();
    for (name, url) in [
        ("good", good.url()),
        ("broken", format!("file://{}", later.display())),
    ] {
        let (status, body) = api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&alice),
                Some(import(name, url)),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let finished = |state: &'static str| {
        let api = &api;
        async move {
            let (_, page) = api
                .call(
                    "GET",
                    &format!("/api/v1/admin/jobs?state={state}"),
                    admin,
                    None,
                )
                .await;
            (page["total"] == 1).then_some(page)
        }
    };
    let done = eventually("the good import to finish", WAIT, || finished("done")).await;
    let failed = eventually("the broken import to fail", WAIT, || finished("failed")).await;
    assert_eq!(done["jobs"][0]["repo"], "alice/good");
    assert_eq!(failed["jobs"][0]["repo"], "alice/broken");
    assert!(
        failed["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{failed}"
    );
    let broken_job = job_ids(&failed)[0].clone();

    // Listing: everything, by repo, paged, and bad filters.
    let (_, all) = api.call("GET", "/api/v1/admin/jobs", admin, None).await;
    assert_eq!(all["total"], 3, "{all}");
    let (_, by_repo) = api
        .call("GET", "/api/v1/admin/jobs?repo=alice/good", admin, None)
        .await;
    assert_eq!(job_ids(&by_repo), job_ids(&done));
    let (_, paged) = api
        .call("GET", "/api/v1/admin/jobs?per_page=2&page=2", admin, None)
        .await;
    assert_eq!(
        (paged["total"].as_i64(), job_ids(&paged).len()),
        (Some(3), 1),
        "{paged}"
    );
    for (query, code) in [
        ("state=stuck", "invalid_state"),
        ("repo=nobody", "invalid_repo"),
        ("per_page=101", "invalid_query"),
        ("page=zero", "invalid_query"),
    ] {
        let (status, body) = api
            .call("GET", &format!("/api/v1/admin/jobs?{query}"), admin, None)
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }

    // Admin only: anonymous 401, a user's token 403.
    for path in [
        "/api/v1/admin/jobs",
        "/api/v1/admin/queue",
        &format!("/api/v1/admin/jobs/{broken_job}"),
    ] {
        let (status, _) = api.call("GET", path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = api.call("GET", path, Some(&alice), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{path}"
        );
    }
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{broken_job}/retry"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // One job with its attempts.
    let (status, shown) = api
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{broken_job}"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["state"], "failed");
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{shown}");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["error_kind"], "not_found");
    assert!(attempts[0]["worker"]
        .as_str()
        .is_some_and(|w| !w.is_empty()));
    let (status, body) = api
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{}", Uuid::new_v4()),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = api
        .call("GET", "/api/v1/admin/jobs/not-a-uuid", admin, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );

    // Retry after the upstream appears: the same job runs again and succeeds; a done job
    // cannot be retried.
    let fixed = Upstream::create(later.clone());
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{broken_job}/retry"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["state"], "pending");
    let job = env.finished(broken_job.parse().unwrap(), WAIT).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    assert_mirrors(&env.mirror_path("alice", "broken"), &fixed);
    let (_, shown) = api
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{broken_job}"),
            admin,
            None,
        )
        .await;
    let outcomes: Vec<_> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("failed"), json!("success")]);
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{broken_job}/retry"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The discarded job can be retried too (dead → pending) and completes.
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{parked}/retry"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        env.finished(parked.parse().unwrap(), WAIT).await.state,
        "done"
    );

    // The queue overview and the mirror's history.
    let (status, q) = api.call("GET", "/api/v1/admin/queue", admin, None).await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["jobs"]["done"], 3, "{q}");
    assert_eq!(
        (q["jobs"]["pending"].as_i64(), q["jobs"]["failed"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(q["throughput"]["last_1h"], 4, "four attempts finished: {q}");
    assert_eq!(q["workers"].as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q["workers"][0]["jobs_in_flight"], 0);
    assert_eq!(q["workers"][0]["concurrency"], env.cfg.worker.concurrency);
    assert!(q["oldest_pending_age_seconds"].is_null());
    assert_eq!(q["scheduler"]["sync_interval"]["source"], "config");
    let (_, history) = api
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
    let (status, _) = api
        .call(
            "GET",
            "/api/v1/repos/alice/broken/mirror/history?limit=0",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Scheduler pause and the run-time interval.
    let (status, body) = api
        .call("POST", "/api/v1/admin/scheduler/pause", admin, None)
        .await;
    assert_eq!(
        (status, body["paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, q) = api.call("GET", "/api/v1/admin/queue", admin, None).await;
    assert_eq!(q["scheduler"]["paused"], true);
    api.call("POST", "/api/v1/admin/scheduler/resume", admin, None)
        .await;
    let (status, body) = api
        .call(
            "PUT",
            "/api/v1/admin/mirror/config",
            admin,
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
        let (status, body) = api
            .call("PUT", "/api/v1/admin/mirror/config", admin, Some(bad))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_interval"))
        );
    }
    let (_, body) = api
        .call(
            "PUT",
            "/api/v1/admin/mirror/config",
            admin,
            Some(json!({ "sync_interval": null })),
        )
        .await;
    assert_eq!(body["source"], "config");

    worker.stop().await;
    let (_, q) = api.call("GET", "/api/v1/admin/queue", admin, None).await;
    assert_eq!(
        q["workers"].as_array().unwrap().len(),
        0,
        "a stopped worker leaves the registry"
    );
}
