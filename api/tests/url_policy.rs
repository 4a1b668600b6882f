//! Upstream URLs through the HTTP API: ambiguous or internal ones are refused, what is
//! stored is the canonical form, credentials never come back, and free text is bounded.

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_testkit::TestEnv;

mod common;

use common::{Api, Users};

/// URLs the `url` crate reads as host 1.2.3.4 but libgit2 as 127.0.0.1.
const PARSER_CONFUSIONS: [&str; 5] = [
    "http://1.2.3.4#@127.0.0.1:9/x.git",
    "http://1.2.3.4?@127.0.0.1:9/x.git",
    "http://1.2.3.4\\@127.0.0.1:9/x.git",
    "git://1.2.3.4#@127.0.0.1:9/x.git",
    "git://1.2.3.4?@127.0.0.1:9/x.git",
];

async fn import(api: &Api, token: &str, body: Value) -> (StatusCode, Value) {
    api.call("POST", "/api/v1/repos/import", Some(token), Some(body))
        .await
}

async fn repo_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM repositories")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_internal_and_oversized_input_is_refused() {
    let mut env = TestEnv::new().await;
    env.cfg.mirror.allow_local_network = false;
    let api = Api::start(&env).await;
    let Users { alice, root, .. } = Users::create(&env).await;

    let numeric = [
        "http://2130706433/x.git",
        "http://0x7f.1/x",
        "http://127.1/x",
    ];
    for url in PARSER_CONFUSIONS.iter().chain(&numeric) {
        let (status, answer) = import(&api, &alice, json!({ "name": "x", "clone_url": url })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_url")),
            "{url}: {answer}"
        );
    }
    for url in [
        "http://[::127.0.0.1]/x.git",
        "http://[64:ff9b::7f00:1]/x.git",
        "http://[2002:7f00:1::]/x.git",
        "http://[::ffff:10.0.0.1]/x.git",
    ] {
        let (status, answer) = import(&api, &alice, json!({ "name": "x", "clone_url": url })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("blocked_url")),
            "{url}: {answer}"
        );
    }

    let long_url = format!("https://8.8.8.8/{}.git", "a".repeat(3000));
    let public = "https://8.8.8.8/x.git";
    for (body, code) in [
        (json!({ "name": "x", "clone_url": long_url }), "invalid_url"),
        (
            json!({ "name": "x", "clone_url": public, "description": "d".repeat(1001) }),
            "invalid_description",
        ),
        (
            json!({ "name": "x", "clone_url": public, "description": "d".repeat(1_000_000) }),
            "invalid_description",
        ),
        (
            json!({ "name": "x", "clone_url": public, "sync_interval": "100000h" }),
            "invalid_interval",
        ),
        (
            json!({ "name": "x", "clone_url": public, "sync_interval": "25h" }),
            "invalid_interval",
        ),
    ] {
        let (status, answer) = import(&api, &alice, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{answer}"
        );
        assert!(answer.to_string().len() < 500, "input echoed: {answer}");
    }
    assert_eq!(repo_count(&env).await, 0, "a refused import stored a row");

    // the bounds themselves are accepted
    let body = json!({ "name": "m", "clone_url": public, "mirror": true,
                       "description": "é".repeat(1000), "sync_interval": "24h" });
    let (status, answer) = import(&api, &alice, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["sync_interval_seconds"], 24 * 3600);

    let path = "/api/v1/repos/alice/m/mirror";
    for body in [
        json!({ "sync_interval": "100000h" }),
        json!({ "mirror_url": PARSER_CONFUSIONS[0] }),
        json!({ "mirror_url": "http://[64:ff9b::7f00:1]/x.git" }),
    ] {
        let (status, answer) = api
            .call("PATCH", path, Some(&alice), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (_, repo) = api.call("GET", "/api/v1/repos/alice/m", None, None).await;
    assert_eq!(repo["mirror_url"], public, "a refused change was applied");

    let (status, answer) = api
        .call(
            "PUT",
            "/api/v1/admin/mirror/config",
            Some(&root),
            Some(json!({ "sync_interval": "100000h" })),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_interval"))
    );
    let (status, answer) = api
        .call(
            "PUT",
            "/api/v1/user/notify",
            Some(&alice),
            Some(json!({ "url": "http://1.2.3.4#@127.0.0.1:9/hook" })),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_url"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_urls_are_stored_and_credentials_never_come_back() {
    let env = TestEnv::new().await; // allow_local_network: only parsing refuses
    let api = Api::start(&env).await;
    let Users { alice, .. } = Users::create(&env).await;

    for url in PARSER_CONFUSIONS {
        let (status, _) = import(&api, &alice, json!({ "name": "x", "clone_url": url })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
    }
    for (url, secret) in [
        ("http://user:SECRET@[::zz]/x", "SECRET"),
        ("https://ghp_SEKRIT@exa mple.com/x.git", "SEKRIT"),
        ("https://bob:PASSWORD@a@example.com/x.git", "PASSWORD"),
        ("https://bob:PASSWORD#x@example.com/x.git", "PASSWORD"),
        ("ssh://git:PASSWORD@-oProxyCommand=x/y", "PASSWORD"),
    ] {
        let (status, answer) = import(&api, &alice, json!({ "name": "x", "clone_url": url })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_url")),
            "{answer}"
        );
        assert!(!answer.to_string().contains(secret), "{answer}");
    }

    let raw = "HTTPS://Bob:hunter2@Example.COM:443/a/./b.git";
    let body = json!({ "name": "canon", "clone_url": raw, "mirror": true });
    let (status, answer) = import(&api, &alice, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["mirror_url"], "https://example.com/a/b.git");
    assert_eq!(answer["credentials_configured"], true);
    let stored: String =
        sqlx::query_scalar("SELECT mirror_url FROM repositories WHERE name = 'canon'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(stored, "https://example.com/a/b.git");

    let body = json!({ "name": "g", "clone_url": "git://Example.COM:9418/x.git", "mirror": true });
    assert_eq!(import(&api, &alice, body).await.0, StatusCode::ACCEPTED);
    let (_, repo) = api.call("GET", "/api/v1/repos/alice/g", None, None).await;
    assert_eq!(repo["mirror_url"], "git://example.com/x.git");
    let (status, repo) = api
        .call(
            "PATCH",
            "/api/v1/repos/alice/g/mirror",
            Some(&alice),
            Some(json!({ "mirror_url": "SSH://git@Example.com:22/y.git" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["mirror_url"], "ssh://git@example.com/y.git");

    for path in [
        "/api/v1/repos/alice/canon",
        "/api/v1/repos/alice/canon/mirror/status",
        "/api/v1/repos",
        "/api/v1/users/alice/repos",
    ] {
        for token in [None, Some(alice.as_str())] {
            let (status, body) = api.call("GET", path, token, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            let text = body.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("Bob"),
                "{path}: {text}"
            );
        }
    }
}
