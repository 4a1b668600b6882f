//! Mirror settings through `PATCH …/mirror`: each field applied and shown, untouched
//! fields kept, and every invalid body refused with its code.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{world, World, BAD};

const PATH: &str = "/api/v1/repos/alice/m/mirror";

/// alice's mirror `m` and plain repository `plain`.
async fn with_mirror() -> World {
    let w = world().await;
    w.import("m", true, false).await;
    w.import("plain", false, false).await;
    w
}

async fn patch(w: &World, body: Value) -> (StatusCode, Value) {
    w.api.call("PATCH", PATH, Some(&w.alice), Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_enabled_are_applied_and_untouched_fields_stay() {
    let w = with_mirror().await;
    let (status, repo) = patch(&w, json!({ "sync_interval": "2h", "enabled": false })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        (
            repo["sync_interval_seconds"].as_i64(),
            repo["mirror_enabled"].as_bool()
        ),
        (Some(7200), Some(false))
    );
    let (_, repo) = patch(&w, json!({ "sync_interval": null })).await;
    assert!(
        repo.get("sync_interval_seconds").is_none(),
        "back to the default: {repo}"
    );
    assert_eq!(repo["mirror_enabled"], false, "untouched fields stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_is_on_by_default_and_switched_per_mirror() {
    let w = with_mirror().await;
    let (_, repo) = w.api.call("GET", "/api/v1/repos/alice/m", None, None).await;
    assert_eq!(repo["lfs_enabled"], true, "{repo}");
    let (status, repo) = patch(&w, json!({ "lfs": false })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["lfs_enabled"], false);
    let (_, repo) = patch(&w, json!({ "enabled": false })).await;
    assert_eq!(repo["lfs_enabled"], false, "untouched fields stay");
    let stored: bool = sqlx::query_scalar("SELECT lfs_enabled FROM repositories WHERE name = 'm'")
        .fetch_one(&w.env.pool)
        .await
        .unwrap();
    assert!(!stored);
    let (_, repo) = patch(&w, json!({ "lfs": true })).await;
    assert_eq!(repo["lfs_enabled"], true);
    let (_, plain) = w
        .api
        .call("GET", "/api/v1/repos/alice/plain", None, None)
        .await;
    assert!(plain.get("lfs_enabled").is_none(), "mirrors only: {plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_patterns_are_checked_then_shown_and_one_list_clears_alone() {
    let w = with_mirror().await;
    for bad in [
        json!({ "include_refs": ["heads/*"] }),
        json!({ "exclude_refs": ["refs/*/pull/*"] }),
        json!({ "include_refs": ["refs/heads/a b"] }),
    ] {
        let (status, err) = patch(&w, bad.clone()).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_refs")),
            "{bad}"
        );
    }
    let (status, repo) = patch(
        &w,
        json!({ "include_refs": ["refs/heads/*"], "exclude_refs": ["refs/pull/*"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        (&repo["include_refs"], &repo["exclude_refs"]),
        (&json!(["refs/heads/*"]), &json!(["refs/pull/*"]))
    );
    let (_, repo) = patch(&w, json!({ "include_refs": [] })).await;
    assert_eq!(
        (&repo["include_refs"], &repo["exclude_refs"]),
        (&json!([]), &json!(["refs/pull/*"])),
        "one list cleared, the other kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_interval_brings_a_far_off_next_sync_forward() {
    let w = with_mirror().await;
    sqlx::query(
        "UPDATE repositories SET last_synced_at = now() - interval '1 hour',
             next_sync_at = now() + interval '1 day' WHERE name = 'm'",
    )
    .execute(&w.env.pool)
    .await
    .unwrap();
    let (status, repo) = patch(&w, json!({ "sync_interval": "2h" })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    let hours: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM next_sync_at - now())::float8 / 3600 FROM repositories WHERE name = 'm'",
    )
    .fetch_one(&w.env.pool)
    .await
    .unwrap();
    assert!((0.9..1.1).contains(&hours), "next sync in {hours} h");
}

/// Any interval change starts afresh: the stretch earned by unchanged syncs is
/// forgotten, a mirror never synced is brought forward from now, going back to the
/// default counts as a change, and an unscheduled mirror stays unscheduled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_interval_resets_the_stretch_and_is_never_waited_out() {
    let w = with_mirror().await;
    let schedule = || async {
        sqlx::query_as::<_, (Option<f64>, f64)>(
            "SELECT EXTRACT(EPOCH FROM next_sync_at - now())::float8 / 3600, interval_factor
             FROM repositories WHERE name = 'm'",
        )
        .fetch_one(&w.env.pool)
        .await
        .unwrap()
    };
    let pool = w.env.pool.clone();
    let set = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    };
    set(
        "UPDATE repositories SET last_synced_at = NULL, interval_factor = 8,
             next_sync_at = now() + interval '3 days', sync_interval_secs = 86400
         WHERE name = 'm'",
    )
    .await;
    let (status, repo) = patch(&w, json!({ "sync_interval": "2h" })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    let (hours, factor) = schedule().await;
    assert!(
        hours.is_some_and(|h| (1.9..2.1).contains(&h)),
        "next sync in {hours:?} h"
    );
    assert_eq!(factor, 1.0, "the stretch is forgotten");

    set("UPDATE repositories SET next_sync_at = now() + interval '3 days' WHERE name = 'm'").await;
    let (status, repo) = patch(&w, json!({ "sync_interval": null })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    let default_h = w.env.cfg.mirror.sync_interval.as_secs_f64() / 3600.0;
    let (hours, _) = schedule().await;
    assert!(
        hours.is_some_and(|h| h <= default_h + 0.05),
        "back to the default ({default_h} h): next sync in {hours:?} h"
    );

    set("UPDATE repositories SET next_sync_at = NULL WHERE name = 'm'").await;
    let (status, _) = patch(&w, json!({ "sync_interval": "1h" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        schedule().await.0,
        None,
        "a hard-failed mirror stays unscheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upstream_s_credentials_are_sealed_never_shown_and_leave_with_the_url() {
    let w = with_mirror().await;
    let (status, repo) = patch(
        &w,
        json!({ "mirror_url": "https://carol:tok3n@127.0.0.1:9/x.git" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["mirror_url"], "https://127.0.0.1:9/x.git");
    assert_eq!(repo["credentials_configured"], true);
    let (url, sealed): (String, Option<String>) =
        sqlx::query_as("SELECT mirror_url, mirror_credentials FROM repositories WHERE name = 'm'")
            .fetch_one(&w.env.pool)
            .await
            .unwrap();
    assert_eq!(url, "https://127.0.0.1:9/x.git");
    assert!(sealed.is_some_and(|s| !s.contains("tok3n")));
    let (_, repo) = patch(&w, json!({ "mirror_url": "https://127.0.0.1:9/y.git" })).await;
    assert_eq!(repo["mirror_url"], "https://127.0.0.1:9/y.git");
    assert_eq!(
        repo["credentials_configured"], false,
        "credentials removed with the URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_are_refused_with_their_code() {
    let w = with_mirror().await;
    for (body, status, code) in [
        (json!({ "sync_interval": "30s" }), 400, "invalid_interval"),
        (json!({ "sync_interval": "often" }), 400, "invalid_interval"),
        (
            json!({ "mirror_url": "ftp://example.com/x" }),
            400,
            "invalid_url",
        ),
        (json!({ "mirror_url": "" }), 400, "invalid_url"),
        (json!({ "enabled": "no" }), 422, "invalid_fields"),
        (json!({ "lfs": "off" }), 422, "invalid_fields"),
        (json!({ "sync_interval": 30 }), 422, "invalid_fields"),
        (json!({ "colour": "red" }), 422, "invalid_fields"),
        (json!([1, 2]), 422, "invalid_fields"),
    ] {
        let (got, answer) = patch(&w, body.clone()).await;
        assert_eq!(
            (got.as_u16(), answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_repository_has_no_mirror_to_set_or_sync() {
    let w = with_mirror().await;
    let alice = Some(w.alice.as_str());
    let (status, answer) = w
        .api
        .call(
            "PATCH",
            "/api/v1/repos/alice/plain/mirror",
            alice,
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(
        (status.as_u16(), answer["code"].as_str()),
        (BAD, Some("not_a_mirror"))
    );
    let (status, answer) = w
        .api
        .call("POST", "/api/v1/repos/alice/plain/sync", alice, None)
        .await;
    assert_eq!(
        (status.as_u16(), answer["code"].as_str()),
        (BAD, Some("not_a_mirror"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_refused() {
    let w = with_mirror().await;
    let raw = reqwest::Client::new()
        .patch(format!("{}{PATH}", w.api.base))
        .bearer_auth(&w.alice)
        .body("enabled=true")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 415);
    let raw = reqwest::Client::new()
        .patch(format!("{}{PATH}", w.api.base))
        .bearer_auth(&w.alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
}
