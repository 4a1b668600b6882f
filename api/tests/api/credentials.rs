//! Upstream credentials given as fields (`credentials: {username, password|token}`) on
//! import and in the mirror settings: checked, sealed apart from the URL, sent to the
//! upstream that asks for them, and never shown.

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::eventually;
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::http::GitHttpServer;

use crate::{site, Site, WAIT};

/// A token with every character URL user info must escape.
const TOKEN: &str = "ghp_t0k:en@/?#% with spaces";

async fn settings(s: &Site, body: Value) -> (StatusCode, Value) {
    s.api
        .call(
            "PATCH",
            "/api/v1/repos/alice/private/mirror",
            Some(&s.alice),
            Some(body),
        )
        .await
}

/// Asks for a sync ("Sync now"), waits for it to end and returns its run.
async fn sync_now(s: &Site) -> Value {
    let (status, answer) = s
        .api
        .call(
            "POST",
            "/api/v1/repos/alice/private/sync",
            Some(&s.alice),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {answer}");
    let job: uuid::Uuid = answer["job_id"].as_str().unwrap().parse().unwrap();
    s.env.finished(job, WAIT).await;
    let (_, history) = s
        .api
        .call(
            "GET",
            "/api/v1/repos/alice/private/mirror/history",
            Some(&s.alice),
            None,
        )
        .await;
    history["runs"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_as_fields_reach_the_upstream_and_are_never_shown() {
    let s = site().await;
    let served = s.env.dir.path().join("served");
    let up = Upstream::create(served.join("private.git"));
    let http = GitHttpServer::start(&served);
    http.require_basic_auth("x-access-token", TOKEN);
    let worker = s.env.spawn_worker();

    let body = json!({
        "name": "private", "clone_url": http.url("private.git"), "mirror": true,
        "credentials": { "username": "x-access-token", "token": TOKEN },
    });
    let (status, answer) = s.import(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["mirror_url"], http.url("private.git"));
    assert_eq!(answer["credentials_configured"], true);
    let state = eventually("the import to end", WAIT, || async {
        let (_, body) = s
            .api
            .call(
                "GET",
                "/api/v1/repos/alice/private/mirror/status",
                Some(&s.alice),
                None,
            )
            .await;
        matches!(
            body["sync_state"].as_str(),
            Some("success" | "failed" | "hard_failed")
        )
        .then_some(body)
    })
    .await;
    assert_eq!(state["sync_state"], "success", "{state}");
    assert_mirrors(&s.env.mirror_path("alice", "private"), &up);

    // a wrong token fails as an authentication error; the right one again syncs
    let wrong = json!({ "credentials": { "username": "x-access-token", "password": "nope" } });
    let (status, repo) = settings(&s, wrong).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        repo["mirror_url"],
        http.url("private.git"),
        "the URL is kept"
    );
    let run = sync_now(&s).await;
    assert_eq!(run["error_kind"], "auth", "{run}");
    let right = json!({ "credentials": { "username": "x-access-token", "token": TOKEN } });
    assert_eq!(settings(&s, right).await.0, StatusCode::OK);
    let run = sync_now(&s).await;
    assert_eq!(run["outcome"], "success", "{run}");

    // nothing the API answers carries the token, and the database holds it sealed
    for path in [
        "/api/v1/repos/alice/private",
        "/api/v1/repos/alice/private/mirror/status",
        "/api/v1/repos/alice/private/mirror/history",
    ] {
        let (_, body) = s.api.call("GET", path, Some(&s.alice), None).await;
        assert!(!body.to_string().contains("t0k"), "{path}: {body}");
    }
    let stored: (String, String) = sqlx::query_as(
        "SELECT mirror_url, mirror_credentials FROM repositories WHERE name = 'private'",
    )
    .fetch_one(&s.env.pool)
    .await
    .unwrap();
    assert!(!format!("{stored:?}").contains("t0k"), "{stored:?}");

    // removed: the next sync asks without them and fails as authentication
    let (status, repo) = settings(&s, json!({ "credentials": null })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["credentials_configured"], false);
    assert_eq!(sync_now(&s).await["error_kind"], "auth");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_cannot_apply_are_refused_without_repeating_the_secret() {
    let s = site().await;
    let https = "https://127.0.0.1:9/x.git";
    for (clone_url, credentials, why) in [
        (
            https,
            json!({ "username": "u", "password": "s3cret-1", "token": "s3cret-2" }),
            "both",
        ),
        (https, json!({ "username": "u" }), "neither"),
        (
            https,
            json!({ "username": "", "token": "s3cret-1" }),
            "empty user",
        ),
        (
            https,
            json!({ "username": "u", "token": "s3cret-1\n" }),
            "control character",
        ),
        (
            https,
            json!({ "username": "u", "token": "s3cret-1".repeat(600) }),
            "too long",
        ),
        (
            "https://u:s3cret-2@127.0.0.1:9/x.git",
            json!({ "username": "u", "token": "s3cret-1" }),
            "twice",
        ),
        (
            "git://127.0.0.1:9/x.git",
            json!({ "username": "u", "token": "s3cret-1" }),
            "git://",
        ),
        (
            "ssh://git@127.0.0.1:9/x.git",
            json!({ "username": "u", "token": "s3cret-1" }),
            "ssh",
        ),
    ] {
        let body = json!({ "name": "x", "clone_url": clone_url, "mirror": true, "credentials": credentials });
        let (status, answer) = s.import(body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_credentials")),
            "{why}: {answer}"
        );
        assert!(!answer.to_string().contains("s3cret"), "{why}: {answer}");
    }
    let body = json!({ "name": "x", "clone_url": https, "credentials": { "username": "u", "token": "t", "extra": 1 } });
    let (status, answer) = s.import(body).await;
    assert!(status.is_client_error(), "unknown field: {status} {answer}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM repositories")
        .fetch_one(&s.env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing stored");
}
