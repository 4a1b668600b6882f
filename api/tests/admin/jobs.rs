//! Listing and showing jobs, for admins only.

use reqwest::StatusCode;
use uuid::Uuid;

use crate::{job_ids, ops};
use stasis_shared::domain::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_listed_by_state_with_their_repository_and_error() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    assert_eq!(jobs.done["jobs"][0]["repo"], "alice/good");
    assert_eq!(jobs.failed["jobs"][0]["repo"], "alice/broken");
    assert!(
        jobs.failed["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{}",
        jobs.failed
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_listed_all_by_repository_and_paged() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let (_, all) = o.call("GET", "/api/v1/admin/jobs", None).await;
    assert_eq!(all["total"], 3, "{all}");
    let (_, by_repo) = o
        .call("GET", "/api/v1/admin/jobs?repo=alice/good", None)
        .await;
    assert_eq!(job_ids(&by_repo), job_ids(&jobs.done));
    let (_, paged) = o
        .call("GET", "/api/v1/admin/jobs?per_page=2&page=2", None)
        .await;
    assert_eq!(
        (paged["total"].as_i64(), job_ids(&paged).len()),
        (Some(3), 1),
        "{paged}"
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_filters_are_refused_with_their_code() {
    let o = ops().await;
    for (query, code) in [
        ("state=stuck", "invalid_state"),
        ("repo=nobody", "invalid_repo"),
        ("per_page=101", "invalid_query"),
        ("page=zero", "invalid_query"),
    ] {
        let (status, body) = o
            .call("GET", &format!("/api/v1/admin/jobs?{query}"), None)
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_routes_refuse_anonymous_with_401_and_users_with_403() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let broken_job = &jobs.broken_job;
    for path in [
        "/api/v1/admin/jobs",
        "/api/v1/admin/queue",
        &format!("/api/v1/admin/jobs/{broken_job}"),
    ] {
        let (status, _) = o.api.call("GET", path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, body) = o.api.call("GET", path, Some(&o.alice), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{path}"
        );
    }
    let (status, _) = o
        .api
        .call(
            "POST",
            &format!("/api/v1/admin/jobs/{broken_job}/retry"),
            Some(&o.alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        o.env.job(broken_job.parse().unwrap()).await.state,
        JobState::Failed,
        "a refused retry changes nothing"
    );
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_job_is_shown_with_its_attempts() {
    let o = ops().await;
    let jobs = o.three_jobs().await;
    let (status, shown) = o
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{}", jobs.broken_job),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["state"], "failed");
    // the count under `attempts`, as the listing has it, and the attempts under `runs`:
    // no key twice in the body
    let text = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/admin/jobs/{}",
            o.api.base, jobs.broken_job
        ))
        .bearer_auth(&o.root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("\"attempts\":").count(), 1, "{text}");
    assert_eq!(shown["attempts"], 1, "{shown}");
    assert_eq!(shown["max_attempts"].as_i64().map(|m| m >= 1), Some(true));
    let runs = shown["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{shown}");
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[0]["error_kind"], "not_found");
    assert!(runs[0]["worker"].as_str().is_some_and(|w| !w.is_empty()));
    jobs.worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_job_is_404_and_a_malformed_id_400() {
    let o = ops().await;
    let (status, body) = o
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = o.call("GET", "/api/v1/admin/jobs/not-a-uuid", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );
}

/// Past 10,000 jobs the listing and the overview stop counting (a count of every job
/// reads the whole table): the listing says "at least", the overview gives Postgres's
/// estimate and names the state; small counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_counts_are_bounded_and_say_so_small_ones_stay_exact() {
    let o = ops().await;
    let (alice, _) = o.env.user("carol", false).await;
    let busy = o.env.mirror(&alice, "busy", &o.good.url()).await;
    let quiet = o.env.mirror(&alice, "quiet", &o.good.url()).await;
    for (repo, n) in [(busy, 10_050), (quiet, 3)] {
        sqlx::query(
            "INSERT INTO sync_jobs (id, repo_id, reason, state, max_attempts, finished_at)
             SELECT gen_random_uuid(), $1, 'scheduled', 'done', 1, now()
             FROM generate_series(1, $2)",
        )
        .bind(repo)
        .bind(n)
        .execute(&o.env.pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE sync_jobs")
        .execute(&o.env.pool)
        .await
        .unwrap();

    let (status, page) = o.call("GET", "/api/v1/admin/jobs?per_page=10", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["total"].as_i64(), page["total_exact"].as_bool()),
        (Some(10_000), Some(false))
    );
    let (_, page) = o
        .call("GET", "/api/v1/admin/jobs?repo=carol/quiet", None)
        .await;
    assert_eq!(
        (page["total"].as_i64(), page["total_exact"].as_bool()),
        (Some(3), Some(true))
    );
    // a page past the cap still knows there is at least that much
    let (_, page) = o
        .call("GET", "/api/v1/admin/jobs?per_page=100&page=101", None)
        .await;
    assert_eq!(
        page["jobs"].as_array().unwrap().len(),
        53,
        "{}",
        page["total"]
    );
    assert_eq!(
        (page["total"].as_i64(), page["total_exact"].as_bool()),
        (Some(10_053), Some(true))
    );

    let (_, q) = o.call("GET", "/api/v1/admin/queue", None).await;
    let done = q["jobs"]["done"].as_i64().unwrap();
    assert!(
        (10_040..=10_070).contains(&done),
        "an estimate near the 10,053 jobs: {q}"
    );
    assert_eq!(q["jobs_estimated"], serde_json::json!(["done"]), "{q}");
    assert_eq!(q["jobs"]["pending"], 0, "{q}");
}
