//! The HTTP API served on loopback, with a real worker behind it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use stasis_testkit::git::{assert_mirrors, Upstream};
use stasis_testkit::{eventually, TestEnv};

mod common;

use common::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_sync_and_status_through_http() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let mut up = Upstream::create(env.dir.path().join("up"));
    let (_, alice) = env.user("alice", false).await;
    let (_, mallory) = env.user("mallory", false).await;
    let (_, admin) = env.user("root", true).await;
    let worker = env.spawn_worker();

    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);

    let import = json!({ "name": "up", "clone_url": up.url(), "mirror": true });
    let (status, body) = api
        .call("POST", "/api/v1/repos/import", None, Some(import.clone()))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some("stasis_nope"),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&alice),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["is_mirror"], true);
    assert_eq!(body["sync_status"], "queued");
    let (status, body) = api
        .call("POST", "/api/v1/repos/import", Some(&alice), Some(import))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    let synced = eventually("the import to sync", Duration::from_secs(60), || async {
        let (_, body) = api
            .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
            .await;
        (body["sync_status"] == "success").then_some(body)
    })
    .await;
    for field in [
        "is_mirror",
        "mirror_url",
        "last_synced_at",
        "sync_status",
        "sync_error",
        "next_sync_at",
        "last_duration_ms",
        "job_id",
    ] {
        assert!(
            synced.get(field).is_some(),
            "status lacks {field}: {synced}"
        );
    }
    assert_eq!(synced["sync_error"], "");
    assert_mirrors(&env.mirror_path("alice", "up"), &up);

    // manual sync: owner and admin may, others may not; repeated requests share a job
    up.commit("new upstream work");
    let (status, body) = api
        .call("POST", "/api/v1/repos/alice/up/sync", Some(&mallory), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, first) = api
        .call("POST", "/api/v1/repos/alice/up/sync", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["message"], "Mirror sync started");
    assert!(
        matches!(
            first["status"].as_str(),
            Some("queued" | "syncing" | "success")
        ),
        "{first}"
    );
    let (status, again) = api
        .call("POST", "/api/v1/repos/alice/up/sync", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    if again["message"] != "Mirror sync started" {
        assert_eq!(
            again["job_id"], first["job_id"],
            "a second job while one was pending"
        );
    }
    eventually("the manual sync", Duration::from_secs(60), || async {
        let (_, body) = api
            .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
            .await;
        (body["sync_status"] == "success" && body["job_id"].is_null()).then_some(())
    })
    .await;
    assert_mirrors(&env.mirror_path("alice", "up"), &up);

    // bad input answers with JSON errors, never a 500
    let cases = [
        (
            json!({ "name": "../etc", "clone_url": up.url(), "mirror": true }),
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
            json!({ "clone_url": up.url() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&alice),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, expected, "{body} → {answer}");
        assert!(
            answer["error"].is_string() && answer["code"].is_string(),
            "{answer}"
        );
    }
    let (status, body) = api
        .call("GET", "/api/v1/repos/alice/nope/mirror/status", None, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // private repositories are invisible to others, and a plain import is not a mirror
    let private =
        json!({ "name": "secret", "clone_url": up.url(), "mirror": true, "private": true });
    assert_eq!(
        api.call("POST", "/api/v1/repos/import", Some(&alice), Some(private))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.call("GET", "/api/v1/repos/alice/secret", Some(&mallory), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("GET", "/api/v1/repos/alice/secret", None, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("GET", "/api/v1/repos/alice/secret", Some(&admin), None)
            .await
            .0,
        StatusCode::OK
    );
    let plain = json!({ "name": "plain", "clone_url": up.url(), "mirror": false });
    assert_eq!(
        api.call("POST", "/api/v1/repos/import", Some(&alice), Some(plain))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let (status, body) = api
        .call("POST", "/api/v1/repos/alice/plain/sync", Some(&alice), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_a_mirror"))
    );

    worker.stop().await;
}

#[tokio::test]
async fn loopback_and_local_upstreams_are_refused_and_credentials_masked() {
    let mut env = TestEnv::new().await;
    env.cfg.mirror.allow_local_network = false;
    let api = Api::start(&env).await;
    let (_, token) = env.user("alice", false).await;
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

    // Without secrets.key credentials cannot be stored: refused, nothing stored.
    env.cfg.mirror.allow_local_network = true;
    let key = env.cfg.secrets.key.take();
    let api = Api::start(&env).await;
    let body = json!({ "name": "creds", "clone_url": "https://bob:hunter2@127.0.0.1:9/x.git", "mirror": true });
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("credentials_unsupported"))
    );
    assert!(!answer.to_string().contains("hunter2"), "{answer}");

    // With it: stored sealed, shown masked.
    env.cfg.secrets.key = key;
    let api = Api::start(&env).await;
    let (status, answer) = api
        .call("POST", "/api/v1/repos/import", Some(&token), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["mirror_url"], "https://***@127.0.0.1:9/x.git");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_is_served_and_learns_who_a_token_belongs_to() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let (_, ada) = env.user("ada", true).await;

    let (status, me) = api.call("GET", "/api/v1/user", Some(&ada), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({ "username": "ada", "is_admin": true, "notify_url": null })
    );
    let (status, body) = api.call("GET", "/api/v1/user", None, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = api
        .call("GET", "/api/v1/user", Some("stasis_nope"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (path, kind, needle) in [
        ("/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "MirrorSyncButton"),
        ("/ui/app.css", "text/css", ".spin"),
    ] {
        let resp = reqwest::get(format!("{}{path}", api.base)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").contains("default-src 'self'"),
            "{path}"
        );
        assert!(resp.text().await.unwrap().contains(needle), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_sync_now_requests_gets_one_job_and_one_delivery() {
    let env = TestEnv::new().await;
    let api = std::sync::Arc::new(Api::start(&env).await);
    let (owner, alice) = env.user("alice", false).await;
    let repo = env
        .mirror(&owner, "hot", "https://example.com/hot.git")
        .await;
    // no worker: every request after the first finds the job pending
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (api, alice) = (api.clone(), alice.clone());
        requests.spawn(async move {
            api.call("POST", "/api/v1/repos/alice/hot/sync", Some(&alice), None)
                .await
        });
    }
    let mut jobs = std::collections::BTreeSet::new();
    while let Some(answer) = requests.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        jobs.insert(body["job_id"].as_str().map(str::to_owned));
    }
    assert_eq!(jobs.len(), 1, "one job for all: {jobs:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE repo_id = $1")
        .bind(repo)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(env.waiting_deliveries().await, 1, "one delivery in Redis");
}
