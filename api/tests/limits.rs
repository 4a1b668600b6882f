//! The guard in front of the API: per-client rate limits (a budget follows who the
//! caller is: the user of a valid token in any spelling of the header, the address for
//! anything else, the mirror and address for webhook deliveries), the per-user
//! repository quota, the header read timeout against slow clients, and the request
//! timeout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::services::PrivatePostgres;
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
        // a token's first request also spends its address's budget (it is not known
        // to be valid until looked up): alice's, bob's, the tokenless request and
        // root's below spend four of the address's
        cfg.ratelimit.read_burst = 4;
    })
    .await;
    let (_, alice) = env.user("alice", false).await;
    let (_, bob) = env.user("bob", false).await;
    for _ in 0..4 {
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

/// `GET path` with these `Authorization` header values, each its own header line.
async fn get_as(api: &Api, path: &str, authorization: &[&str]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", api.base));
    for value in authorization {
        req = req.header("authorization", *value);
    }
    req.send().await.unwrap()
}

async fn code_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A token nobody was given, different for each `i`, shaped like a real one.
fn made_up(i: usize) -> String {
    format!("stasis_{i:064x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_valid_token_spends_its_users_one_budget() {
    let env = TestEnv::new().await;
    let api = Api::start_with(&env, |cfg| {
        cfg.ratelimit.read_per_second = 1;
        cfg.ratelimit.read_burst = 4;
    })
    .await;
    let (_, alice) = env.user("alice", false).await;
    let (_, bob) = env.user("bob", false).await;
    // each a header that authenticates as alice; once keyed on the raw header, each
    // spelling had a budget of its own
    let spellings: Vec<Vec<String>> = vec![
        vec![format!("Bearer {alice}")],
        vec![format!("Bearer  {alice}")],
        vec![format!("bearer\t{alice}")],
        vec![format!("BEARER \t {alice}  ")],
        vec![format!("Bearer {alice}\t")],
        vec![format!("Bearer {alice}"), format!("bearer   {alice}")],
        vec![format!("Bearer      {alice}")],
        vec![format!("bEaReR\t\t{alice}")],
    ];
    let mut answers = Vec::new();
    for spelling in &spellings {
        let values: Vec<&str> = spelling.iter().map(String::as_str).collect();
        let (status, body) = code_of(get_as(&api, "/api/v1/user", &values).await).await;
        if status == StatusCode::OK {
            assert_eq!(body["username"], "alice", "{body}");
        } else {
            assert_eq!(body["code"], "rate_limited", "{status} {body}");
        }
        answers.push(status);
    }
    let served = answers.iter().filter(|s| **s == StatusCode::OK).count();
    // the burst of 4, and at most one refilled per second of a run that takes well
    // under one
    assert!((4..=5).contains(&served), "{answers:?}");
    assert_eq!(answers[..4], [StatusCode::OK; 4], "{answers:?}");
    assert_eq!(
        *answers.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{answers:?}"
    );
    // bob's budget is his own, and alice's spellings spent one request of the
    // address's (her first, before her token was known)
    let (status, body) =
        code_of(get_as(&api, "/api/v1/user", &[&format!("bearer\t{bob}")]).await).await;
    assert_eq!((status, &body["username"]), (StatusCode::OK, &json!("bob")));
    assert_eq!(
        get(&api, "/api/v1/repos", None).await.status(),
        StatusCode::OK
    );
    // headers naming two different tokens are no one's: refused, never either user
    let (status, body) = code_of(
        get_as(
            &api,
            "/api/v1/user",
            &[&format!("Bearer {bob}"), &format!("Bearer {alice}")],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_tokens_spend_the_address_budget_and_past_it_never_reach_postgres() {
    let pg = PrivatePostgres::start();
    let env = TestEnv::with_postgres(&pg.admin_url()).await;
    let api = Api::start_with(&env, |cfg| {
        cfg.ratelimit.read_per_second = 1;
        cfg.ratelimit.read_burst = 5;
        cfg.api.request_timeout = Duration::from_secs(3);
    })
    .await;
    let (_, alice) = env.user("alice", false).await;
    // alice's token is looked up and known from here on (her first request spent one
    // of the address's five)
    assert_eq!(
        get(&api, "/api/v1/user", Some(&alice)).await.status(),
        StatusCode::OK
    );
    // each made-up token is looked up and refused, until the address's budget is spent
    let mut looked_up = 0;
    let refused = loop {
        let (status, body) =
            code_of(get(&api, "/api/v1/user", Some(&made_up(looked_up))).await).await;
        if status != StatusCode::UNAUTHORIZED {
            break (status, body);
        }
        assert_eq!(body["code"], "invalid_token", "{body}");
        looked_up += 1;
        assert!(looked_up < 50, "made-up tokens are never limited");
    };
    assert_eq!(
        (refused.0, refused.1["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{}",
        refused.1
    );
    assert!(refused.1["error"].is_string(), "{}", refused.1);
    assert!((4..=6).contains(&looked_up), "{looked_up}");
    // the same budget: the address's tokenless requests and malformed headers are
    // refused, past what the budget refilled since (one a second, on a slow machine
    // possibly one between two requests)
    let refused_at = Instant::now();
    let mut answered = 0;
    for header in [None, Some("Basic YWxpY2U6eA==")] {
        loop {
            let response = match header {
                None => get(&api, "/api/v1/repos", None).await,
                Some(h) => get_as(&api, "/api/v1/user", &[h]).await,
            };
            let (status, body) = code_of(response).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(body["code"], "rate_limited", "{body}");
                break;
            }
            answered += 1;
            assert!(
                answered <= refused_at.elapsed().as_secs() + 1,
                "{header:?} has a budget of its own: {status} {body}"
            );
        }
    }
    // alice spends her own
    assert_eq!(
        get(&api, "/api/v1/user", Some(&alice)).await.status(),
        StatusCode::OK
    );

    // Postgres goes away. Malformed headers, refused without a lookup, spend again
    // what the address's budget refilled meanwhile.
    pg.stop();
    let mut malformed = 0;
    while get_as(&api, "/api/v1/user", &["Bearer"]).await.status() != StatusCode::TOO_MANY_REQUESTS
    {
        malformed += 1;
        assert!(malformed < 20, "malformed headers are never limited");
    }
    // Made-up tokens, all at once, are answered 429: had one been looked up, Postgres
    // being gone would have made it a 503 (or 504). At most the one the address's
    // budget refills in the meantime (one a second) reaches it.
    let client = reqwest::Client::new();
    let mut sent = tokio::task::JoinSet::new();
    for i in 100..120 {
        let req = client
            .get(format!("{}/api/v1/user", api.base))
            .bearer_auth(made_up(i))
            .send();
        sent.spawn(async move { code_of(req.await.unwrap()).await });
    }
    let answers = sent.join_all().await;
    let mut reached_postgres = 0;
    for (status, body) in &answers {
        if *status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["code"], "rate_limited", "{body}");
        } else {
            assert!(matches!(status.as_u16(), 503 | 504), "{status} {body}");
            reached_postgres += 1;
        }
    }
    assert!(reached_postgres <= 1, "{answers:?}");
    // while a token that is looked up does find Postgres gone
    let (status, body) = code_of(get(&api, "/api/v1/user", Some(&alice)).await).await;
    assert!(matches!(status.as_u16(), 503 | 504), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_made_up_tokens_from_one_address_are_mostly_refused_unlooked() {
    let env = TestEnv::new().await;
    // the shipped limits: reads 100 a second, bursts of 400
    let api = Api::start(&env).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (mut unknown, mut limited) = (0u64, 0u64);
    for i in 0..3000 {
        let status = client
            .get(format!("{}/api/v1/user", api.base))
            .bearer_auth(made_up(i))
            .send()
            .await
            .unwrap()
            .status();
        match status {
            StatusCode::UNAUTHORIZED => unknown += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}"),
        }
    }
    let elapsed = started.elapsed();
    // each 401 is one lookup: the burst, and what a second's refill allows since
    let most = 400 + 100 * (elapsed.as_secs() + 1);
    assert!(unknown <= most, "{unknown} lookups in {elapsed:?}");
    assert_eq!(unknown + limited, 3000);
    assert!(limited > 0, "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_spend_their_mirrors_budget_from_their_address() {
    const SECRET: &str = "hook-secret-5d2a";
    const PUSH: &[u8] = br#"{"ref":"refs/heads/main","commits":[]}"#;
    let env = TestEnv::new().await;
    let (owner, alice) = env.user("alice", false).await;
    for name in ["m1", "m2"] {
        env.mirror(&owner, name, &format!("https://example.com/{name}.git"))
            .await;
    }
    {
        // secrets set through an API with the shipped limits, apart from the one
        // under test
        let setup = Api::start(&env).await;
        for name in ["m1", "m2"] {
            let (status, body) = setup
                .call(
                    "PATCH",
                    &format!("/api/v1/repos/alice/{name}/mirror"),
                    Some(&alice),
                    Some(json!({ "webhook_secret": SECRET })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let api = Api::start_with(&env, |cfg| {
        cfg.ratelimit.write_per_second = 1;
        cfg.ratelimit.write_burst = 3;
    })
    .await;
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(PUSH);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let deliver = |target: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/hooks/{target}", api.base))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-hub-signature-256", &signature)
            .body(PUSH)
            .send()
    };
    // m1's budget: three deliveries, the fourth refused (the first, before m1 was
    // known, also spent one of the address's three)
    for _ in 0..3 {
        let (status, body) = code_of(deliver("alice/m1").await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let refused = deliver("alice/m1").await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    let (status, body) = code_of(refused).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{body}"
    );
    // m2, from the same address, has its own
    let (status, body) = code_of(deliver("alice/m2").await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // deliveries to mirrors that do not exist prove nothing: the address pays, and
    // once its budget is spent they are refused before any lookup
    let (status, body) = code_of(deliver("alice/nope-1").await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = code_of(deliver("alice/nope-2").await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{body}"
    );
    // which leaves m2's verified deliveries alone
    let (status, body) = code_of(deliver("alice/m2").await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
