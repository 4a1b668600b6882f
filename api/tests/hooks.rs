//! Push webhooks through HTTP with a real worker: the secret is set, sealed and never
//! shown; each provider's signature scheme enqueues a sync that really runs; a bad
//! signature is a 401 that enqueues nothing.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use stasis_testkit::git::{assert_mirrors, GitDaemon, Upstream};
use stasis_testkit::{eventually, TestEnv};

mod common;

use common::Api;

const SECRET: &str = "hook-secret-8c1f";
const WAIT: Duration = Duration::from_secs(60);

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn hook(
    api: &Api,
    repo: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/hooks/{repo}", api.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn webhook_jobs(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE reason = 'webhook'")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_push_events_sync_the_mirror_and_bad_signatures_do_nothing() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let worker = env.spawn_worker();
    let (_, alice) = env.user("alice", false).await;
    let (_, mallory) = env.user("mallory", false).await;
    let served = env.dir.path().join("served");
    let mut up = Upstream::create(served.join("up"));
    let daemon = GitDaemon::start(&served);
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/repos/import",
            Some(&alice),
            Some(json!({ "name": "up", "clone_url": daemon.url("up"), "mirror": true })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["webhook_configured"], false);
    let body = br#"{"ref":"refs/heads/main","commits":[]}"#;
    let github = |secret: &str, event: &str| {
        vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", sign(secret, body)),
            ),
            ("x-github-event", event.to_owned()),
        ]
    };

    // no secret yet: the hook is unknown, like a missing repository
    let (status, err) = hook(&api, "alice/up", &github(SECRET, "push"), body).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = hook(&api, "alice/nothing", &github(SECRET, "push"), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // only the owner sets it, it must be long enough, and it is never shown again
    let patch = |token: &str, secret: Value| {
        let (api, token) = (&api, token.to_owned());
        async move {
            api.call(
                "PATCH",
                "/api/v1/repos/alice/up/mirror",
                Some(&token),
                Some(json!({ "webhook_secret": secret })),
            )
            .await
        }
    };
    assert_eq!(
        patch(&mallory, json!(SECRET)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, err) = patch(&alice, json!("short")).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_secret"))
    );
    let (status, repo) = patch(&alice, json!(SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["webhook_configured"], true);
    let (_, shown) = api
        .call("GET", "/api/v1/repos/alice/up", Some(&alice), None)
        .await;
    for text in [repo.to_string(), shown.to_string()] {
        assert!(!text.contains(SECRET), "secret echoed: {text}");
    }
    let stored: String =
        sqlx::query_scalar("SELECT webhook_secret FROM repositories WHERE name = 'up'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(!stored.contains(SECRET), "stored in the clear");

    // wrong secret, tampered body, no signature: 401 and nothing enqueued
    eventually("the import to finish", WAIT, || async {
        let (_, s) = api
            .call("GET", "/api/v1/repos/alice/up/mirror/status", None, None)
            .await;
        (s["sync_status"] == "success").then_some(())
    })
    .await;
    up.commit("pushed upstream");
    for (headers, payload) in [
        (github("not-the-secret", "push"), body.as_slice()),
        (
            github(SECRET, "push"),
            br#"{"ref":"refs/heads/evil"}"#.as_slice(),
        ),
        (
            vec![("x-gitlab-token", "not-the-secret".to_owned())],
            body.as_slice(),
        ),
        (vec![("x-github-event", "push".to_owned())], body.as_slice()),
    ] {
        let (status, err) = hook(&api, "alice/up", &headers, payload).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_signature"))
        );
    }
    assert_eq!(webhook_jobs(&env).await, 0);

    // GitHub's ping is answered without a sync
    let (status, pong) = hook(&api, "alice/up", &github(SECRET, "ping"), body).await;
    assert_eq!(
        (status, pong["message"].as_str()),
        (StatusCode::OK, Some("pong"))
    );
    assert_eq!(webhook_jobs(&env).await, 0);

    // a verified push from each provider syncs the mirror
    let providers: [Vec<(&str, String)>; 3] = [
        github(SECRET, "push"),
        vec![
            ("x-gitea-signature", sign(SECRET, body)),
            ("x-gitea-event", "push".into()),
        ],
        vec![
            ("x-gitlab-token", SECRET.to_owned()),
            ("x-gitlab-event", "Push Hook".into()),
        ],
    ];
    for headers in providers {
        let (status, accepted) = hook(&api, "alice/up", &headers, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let job = accepted["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(env.finished(job, WAIT).await.state, "done");
        assert_eq!(env.job(job).await.reason, "webhook");
        assert_mirrors(&env.mirror_path("alice", "up"), &up);
        up.commit("more upstream work");
    }

    // removing the secret turns the hook off
    let (status, repo) = patch(&alice, Value::Null).await;
    assert_eq!(
        (status, &repo["webhook_configured"]),
        (StatusCode::OK, &json!(false))
    );
    let (status, _) = hook(&api, "alice/up", &github(SECRET, "push"), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    worker.stop().await;
}
