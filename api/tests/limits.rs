//! The guard in front of the API: per-client rate limits, the per-user repository
//! quota, the header read timeout against slow clients, and the request timeout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::Api;

async fn get(api: &Api, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", api.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// Alice's token and a transaction holding the row of her mirror `m`: a "Sync now" of
/// it waits until the transaction ends.
async fn mirror_held(env: &TestEnv) -> (String, sqlx::Transaction<'static, sqlx::Postgres>) {
    let (owner, alice) = env.user("alice", false).await;
    let repo = env.mirror(&owner, "m", "https://example.com/m.git").await;
    let mut tx = env.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM repositories WHERE id = $1 FOR UPDATE")
        .bind(repo)
        .execute(&mut *tx)
        .await
        .unwrap();
    (alice, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_budget_a_token_gets_429_with_retry_after_and_others_do_not() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |cfg| {
        cfg.ratelimit.read_per_second = 1;
        cfg.ratelimit.read_burst = 3;
    })
    .await;
    let (_, alice) = env.user("alice", false).await;
    let (_, bob) = env.user("bob", false).await;
    for _ in 0..3 {
        assert_eq!(
            get(&api, "/api/v1/user", Some(&alice)).await.status(),
            StatusCode::OK
        );
    }
    let refused = get(&api, "/api/v1/user", Some(&alice)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(body["error"].as_str().unwrap().contains("rate limit"));

    // another token, and the address without a token, have budgets of their own
    assert_eq!(
        get(&api, "/api/v1/user", Some(&bob)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&api, "/api/v1/repos", None).await.status(),
        StatusCode::OK
    );
    // probes are never limited
    for _ in 0..10 {
        assert_eq!(get(&api, "/healthz", None).await.status(), StatusCode::OK);
    }
    // a write spends another budget
    let (status, body) = api
        .call(
            "PUT",
            "/api/v1/user/notify",
            Some(&alice),
            Some(json!({ "url": null })),
        )
        .await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // the operator sees the refusal (an admin's reads spend a budget of their own)
    let (_, root) = env.user("root", true).await;
    let queue: Value = get(&api, "/api/v1/admin/queue", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    let refused = queue["api_refusals"]["rate_limited_read"].as_u64();
    assert!(refused.is_some_and(|n| n >= 1), "{queue}");
    assert!(
        queue["jobs"].is_object(),
        "the overview is still there: {queue}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_beyond_the_quota_are_refused() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |cfg| cfg.mirror.max_per_user = 2).await;
    let (_, alice) = env.user("alice", false).await;
    let import = |name: &str| {
        let body =
            json!({ "name": name, "clone_url": "https://example.com/x.git", "mirror": false });
        api.call("POST", "/api/v1/repos/import", Some(&alice), Some(body))
    };
    for name in ["one", "two"] {
        let (status, body) = import(name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = import("three").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("quota_exceeded")),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("max_per_user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let env = TestEnv::new().await;
    let timeout = Duration::from_secs(1);
    let api = Api::start_with(&env, |cfg| cfg.api.header_read_timeout = timeout).await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // the slowness is what is under test: one byte of the request head every 200 ms
    let trickle = tokio::spawn(async move {
        let head =
            b"GET /api/v1/repos HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    });
    let mut answer = Vec::new();
    // a reset is as good as a close
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    let elapsed = started.elapsed();
    assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
    assert!(
        !trickle.is_finished() || !trickle.await.unwrap(),
        "the whole head was sent"
    );
    // no answer to the request, if anything a 408
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // the server is fine for everyone else
    assert_eq!(get(&api, "/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_timeout_answers_504_json() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |cfg| {
        cfg.api.request_timeout = Duration::from_millis(500)
    })
    .await;
    // a genuinely slow request: "Sync now" waits for the repository row another
    // transaction holds
    let (alice, tx) = mirror_held(&env).await;
    let started = Instant::now();
    let (status, body) = api
        .call("POST", "/api/v1/repos/alice/m/sync", Some(&alice), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("timeout")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    tx.rollback().await.unwrap();
    // abandoned halfway, it left nothing behind: the next request gets a job
    let (status, body) = api
        .call("POST", "/api/v1/repos/alice/m/sync", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_shed_but_probes_answer() {
    let env = TestEnv::new().await;
    let api =
        std::sync::Arc::new(Api::start_with(&env, |cfg| cfg.api.max_concurrent_requests = 1).await);
    let (alice, tx) = mirror_held(&env).await;
    let stuck = {
        let (api, alice) = (api.clone(), alice.clone());
        tokio::spawn(async move {
            api.call("POST", "/api/v1/repos/alice/m/sync", Some(&alice), None)
                .await
        })
    };
    stasis_testkit::eventually(
        "the request to wait for the row",
        Duration::from_secs(10),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            .fetch_one(&env.pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    let (status, body) = api.call("GET", "/api/v1/repos", None, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded")),
        "{body}"
    );
    assert_eq!(get(&api, "/healthz", None).await.status(), StatusCode::OK);
    tx.rollback().await.unwrap();
    let (status, body) = stuck.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        get(&api, "/api/v1/repos", None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_guards_answers() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |_| {}).await;
    let (_, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    let sync = &doc["paths"]["/api/v1/repos/{owner}/{repo}/sync"]["post"];
    for status in ["413", "429", "503", "504"] {
        assert!(sync["responses"][status].is_object(), "{status}: {sync}");
    }
    assert!(sync["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert!(sync["parameters"].to_string().contains("force"));
    let probe = &doc["paths"]["/healthz"]["get"]["responses"];
    assert!(probe["429"].is_null(), "probes are not limited: {probe}");
}
