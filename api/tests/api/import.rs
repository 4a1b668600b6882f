//! Importing a repository: who may, what input is refused (as JSON, never a 500), which
//! upstreams are blocked, how credentials are kept, and who sees a private one.

use reqwest::StatusCode;
use serde_json::json;
use stasis_testkit::git::{git, refs};
use stasis_testkit::{eventually, TestEnv};

use crate::common::{Api, Users};
use crate::{site, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_needs_a_valid_token_and_a_free_name() {
    let s = site().await;
    let import = json!({ "name": "up", "clone_url": s.up.url(), "mirror": true });
    let (status, body) = s
        .api
        .call("POST", "/api/v1/repos/import", None, Some(import.clone()))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = s
        .api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some("stasis_nope"),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = s.import(import.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["is_mirror"], true);
    // the public status shows the import in progress; the full state says it waits
    assert_eq!(
        (&body["sync_status"], &body["sync_state"]),
        (&json!("syncing"), &json!("queued"))
    );
    let (status, body) = s.import(import).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_with_json_errors_never_a_500() {
    let s = site().await;
    let cases = [
        (
            json!({ "name": "../etc", "clone_url": s.up.url(), "mirror": true }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "ok", "clone_url": "ftp://example.com/x", "mirror": true }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": "ok", "clone_url": 5, "mirror": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "clone_url": s.up.url() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = s.import(body.clone()).await;
        assert_eq!(status, expected, "{body} → {answer}");
        assert!(
            answer["error"].is_string() && answer["code"].is_string(),
            "{answer}"
        );
    }
    let (status, body) = s
        .api
        .call("GET", "/api/v1/repos/alice/nope/mirror/status", None, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_import_is_invisible_to_others_and_anonymous_but_not_to_admins() {
    let s = site().await;
    let private =
        json!({ "name": "secret", "clone_url": s.up.url(), "mirror": true, "private": true });
    assert_eq!(s.import(private).await.0, StatusCode::ACCEPTED);
    for (who, token, expected) in [
        ("mallory", Some(s.mallory.as_str()), StatusCode::NOT_FOUND),
        ("anonymous", None, StatusCode::NOT_FOUND),
        ("admin", Some(s.admin.as_str()), StatusCode::OK),
    ] {
        let (status, _) = s
            .api
            .call("GET", "/api/v1/repos/alice/secret", token, None)
            .await;
        assert_eq!(status, expected, "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_import_is_not_a_mirror_to_sync() {
    let s = site().await;
    let plain = json!({ "name": "plain", "clone_url": s.up.url(), "mirror": false });
    assert_eq!(s.import(plain).await.0, StatusCode::ACCEPTED);
    let (status, body) = s
        .api
        .call(
            "POST",
            "/api/v1/repos/alice/plain/sync",
            Some(&s.alice),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_a_mirror"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_and_local_upstreams_are_refused() {
    let mut env = TestEnv::new().await;
    env.cfg.mirror.allow_local_network = false;
    let api = Api::start(&env).await;
    let Users { alice: token, .. } = Users::create(&env).await;
    for url in [
        "https://127.0.0.1/x.git",
        "http://[::1]/x.git",
        "git://10.0.0.1/x",
        "https://169.254.169.254/x",
        "http://localhost/x.git",
        "file:///etc",
    ] {
        let body = json!({ "name": "x", "clone_url": url, "mirror": true });
        let (status, answer) = api
            .call("POST", "/api/v1/repos/import", Some(&token), Some(body))
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("blocked_url")),
            "{url}"
        );
    }
}

fn with_credentials() -> serde_json::Value {
    json!({ "name": "creds", "clone_url": "https://bob:hunter2@127.0.0.1:9/x.git", "mirror": true })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_secrets_key_credentials_are_refused_and_nothing_stored() {
    let mut env = TestEnv::new().await;
    env.cfg.secrets.key = None;
    let api = Api::start(&env).await;
    let Users { alice: token, .. } = Users::create(&env).await;
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&token),
            Some(with_credentials()),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("credentials_unsupported"))
    );
    assert!(!answer.to_string().contains("hunter2"), "{answer}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM repositories")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_secrets_key_credentials_are_stored_sealed_and_never_shown() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let Users { alice: token, .. } = Users::create(&env).await;
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&token),
            Some(with_credentials()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["mirror_url"], "https://127.0.0.1:9/x.git");
    assert_eq!(answer["credentials_configured"], true);
    let (stored_url, sealed): (String, String) = sqlx::query_as(
        "SELECT mirror_url, mirror_credentials FROM repositories WHERE name = 'creds'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(stored_url, "https://127.0.0.1:9/x.git");
    assert!(
        !sealed.contains("hunter2") && !sealed.contains("bob"),
        "{sealed}"
    );
    let (_, status_body) = api
        .call("GET", "/api/v1/repos/alice/creds/mirror/status", None, None)
        .await;
    assert!(
        !status_body.to_string().contains("hunter2"),
        "{status_body}"
    );
}

/// Selective sync set at import: the first fetch already leaves out what the mirror
/// would never keep, and a bad pattern is refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_with_a_ref_selection_never_fetches_the_excluded_refs() {
    let mut s = site().await;
    let head = s.up.commit("main work");
    git(&s.up.path, &["update-ref", "refs/pull/1/head", &head]);
    git(&s.up.path, &["update-ref", "refs/heads/keep", &head]);
    let (status, body) = s
        .import(
            json!({ "name": "sel", "clone_url": s.up.url(), "mirror": true,
                        "include_refs": ["refs/heads/bogus pattern"] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_refs")),
        "{body}"
    );
    let (status, body) = s
        .import(
            json!({ "name": "sel", "clone_url": s.up.url(), "mirror": true,
                        "exclude_refs": ["refs/pull/*"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["exclude_refs"], json!(["refs/pull/*"]));
    let _worker = s.env.spawn_worker();
    eventually("the import to sync", WAIT, || async {
        let (_, b) = s
            .api
            .call(
                "GET",
                "/api/v1/repos/alice/sel/mirror/status",
                Some(&s.alice),
                None,
            )
            .await;
        (b["sync_state"] == "success").then_some(())
    })
    .await;
    let mirrored = refs(&s.env.mirror_path("alice", "sel"));
    let mut expected = s.up.refs();
    expected.remove("refs/pull/1/head");
    assert_eq!(mirrored, expected);
}
