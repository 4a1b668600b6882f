//! The REST contract, table by table: who may do what to public and private
//! repositories, listings, mirror settings, deletion and the OpenAPI document.

use reqwest::StatusCode;
use serde_json::{json, Value};
use stasis_shared::db::users;
use stasis_shared::lock::Leases;
use stasis_testkit::git::Upstream;
use stasis_testkit::TestEnv;

mod common;

use common::Api;

const OK: u16 = 200;
const ACCEPTED: u16 = 202;
const NO_CONTENT: u16 = 204;
const BAD: u16 = 400;
const UNAUTH: u16 = 401;
const FORBIDDEN: u16 = 403;
const NOT_FOUND: u16 = 404;
const CONFLICT: u16 = 409;

struct World {
    env: TestEnv,
    api: Api,
    alice: String,
    mallory: String,
    root: String,
    revoked: String,
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    let (_, alice) = env.user("alice", false).await;
    let (_, mallory) = env.user("mallory", false).await;
    let (_, root) = env.user("root", true).await;
    let (_, revoked) = env.user("rex", false).await;
    users::revoke_token(&env.pool, "rex").await.unwrap();
    World {
        env,
        api,
        alice,
        mallory,
        root,
        revoked,
    }
}

impl World {
    async fn import(&self, name: &str, mirror: bool, private: bool) -> Value {
        let up = self.env.dir.path().join(format!("up-{name}"));
        let url = Upstream::create(up).url();
        let body = json!({ "name": name, "clone_url": url, "mirror": mirror, "private": private });
        let (status, answer) = self
            .api
            .call(
                "POST",
                "/api/v1/repos/import",
                Some(&self.alice),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer
    }

    async fn status(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> u16 {
        self.api.call(method, path, token, body).await.0.as_u16()
    }
}

/// Method, path suffix, body, and the statuses expected on the public and on the
/// private repository for [owner, other, admin, anonymous, revoked] (0: not asked here).
type Row = (
    &'static str,
    &'static str,
    Option<Value>,
    [u16; 5],
    [u16; 5],
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_do_what_to_public_and_private_repositories() {
    let w = world().await;
    w.import("pub", true, false).await;
    w.import("priv", true, true).await;
    let actors: [(&str, Option<&str>); 5] = [
        ("owner", Some(&w.alice)),
        ("other", Some(&w.mallory)),
        ("admin", Some(&w.root)),
        ("anonymous", None),
        ("revoked", Some(&w.revoked)),
    ];
    let patch = Some(json!({ "enabled": true }));
    let table: [Row; 6] = [
        (
            "GET",
            "",
            None,
            [OK, OK, OK, OK, UNAUTH],
            [OK, NOT_FOUND, OK, NOT_FOUND, UNAUTH],
        ),
        (
            "GET",
            "/mirror/status",
            None,
            [OK, OK, OK, OK, UNAUTH],
            [OK, NOT_FOUND, OK, NOT_FOUND, UNAUTH],
        ),
        (
            "GET",
            "/mirror/history",
            None,
            [OK, OK, OK, OK, UNAUTH],
            [OK, NOT_FOUND, OK, NOT_FOUND, UNAUTH],
        ),
        (
            "POST",
            "/sync",
            None,
            [ACCEPTED, FORBIDDEN, ACCEPTED, UNAUTH, UNAUTH],
            [ACCEPTED, NOT_FOUND, ACCEPTED, UNAUTH, UNAUTH],
        ),
        (
            "PATCH",
            "/mirror",
            patch,
            [OK, FORBIDDEN, OK, UNAUTH, UNAUTH],
            [OK, NOT_FOUND, OK, UNAUTH, UNAUTH],
        ),
        // owner and admin deletions are exercised in their own test
        (
            "DELETE",
            "",
            None,
            [0, FORBIDDEN, 0, UNAUTH, UNAUTH],
            [0, NOT_FOUND, 0, UNAUTH, UNAUTH],
        ),
    ];
    for (method, suffix, body, public, private) in table {
        for (repo, expected) in [("pub", public), ("priv", private)] {
            for ((actor, token), want) in actors.iter().zip(expected) {
                if want == 0 {
                    continue;
                }
                let path = format!("/api/v1/repos/alice/{repo}{suffix}");
                let (status, answer) = w.api.call(method, &path, *token, body.clone()).await;
                assert_eq!(status.as_u16(), want, "{actor} {method} {path}: {answer}");
                if !status.is_success() {
                    assert!(
                        answer["error"].is_string() && answer["code"].is_string(),
                        "{answer}"
                    );
                }
            }
        }
    }
    // a repository that does not exist looks exactly like a private one
    let (status, body) = w
        .api
        .call("GET", "/api/v1/repos/alice/none", Some(&w.mallory), None)
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (NOT_FOUND, Some("not_found"))
    );
    let (status, body) = w.api.call("GET", "/api/v1/nowhere", None, None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (NOT_FOUND, Some("not_found"))
    );
}

fn names(page: &Value) -> Vec<String> {
    page["repos"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|r| r["full_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_filter_and_hide_private_repositories() {
    let w = world().await;
    w.import("pub", true, false).await;
    w.import("priv", true, true).await;
    w.import("plain", false, false).await;
    sqlx::query("UPDATE repositories SET sync_status = 'failed' WHERE name = 'pub'")
        .execute(&w.env.pool)
        .await
        .unwrap();
    let list = |path: &str, token: Option<&str>| {
        let (api, path, token) = (&w.api, path.to_owned(), token.map(str::to_owned));
        async move {
            let (status, page) = api.call("GET", &path, token.as_deref(), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page
        }
    };
    let everyone = ["alice/plain", "alice/pub"];
    let all = ["alice/plain", "alice/priv", "alice/pub"];
    for (token, expected) in [
        (None, &everyone[..]),
        (Some(w.mallory.as_str()), &everyone[..]),
        (Some(w.alice.as_str()), &all[..]),
        (Some(w.root.as_str()), &all[..]),
    ] {
        let page = list("/api/v1/repos", token).await;
        assert_eq!(names(&page), expected, "{token:?}");
        assert_eq!(page["total"], expected.len());
        let page = list("/api/v1/users/alice/repos", token).await;
        assert_eq!(names(&page), expected, "{token:?}");
    }
    let alice = Some(w.alice.as_str());
    for (query, expected) in [
        ("mirror=true", vec!["alice/priv", "alice/pub"]),
        ("mirror=false", vec!["alice/plain"]),
        ("sync_status=failed", vec!["alice/pub"]),
        ("mirror=true&sync_status=queued", vec!["alice/priv"]),
        ("per_page=1&page=2", vec!["alice/priv"]),
        ("per_page=2&page=3", vec![]),
    ] {
        let page = list(&format!("/api/v1/repos?{query}"), alice).await;
        assert_eq!(names(&page), expected, "{query}");
    }
    let page = list("/api/v1/repos?per_page=1", alice).await;
    assert_eq!(
        (page["total"].as_i64(), page["per_page"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        w.status("GET", "/api/v1/users/nobody/repos", alice, None)
            .await,
        NOT_FOUND
    );
    for query in [
        "per_page=0",
        "per_page=101",
        "page=0",
        "sync_status=bogus",
        "mirror=maybe",
        "colour=red",
        "page=-1",
    ] {
        let (status, body) = w
            .api
            .call("GET", &format!("/api/v1/repos?{query}"), alice, None)
            .await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (BAD, Some("invalid_query")),
            "{query}: {body}"
        );
    }

    // NUL cannot be stored or searched for in Postgres text: a 400, not a 500
    for (method, path, body) in [
        ("GET", "/api/v1/admin/jobs?repo=a%00b/c", None),
        ("GET", "/api/v1/repos/al%00ice/pub", None),
        (
            "POST",
            "/api/v1/repos/import",
            Some(
                json!({ "name": "nul", "clone_url": "https://example.com/x.git",
                         "mirror": false, "description": "a\u{0}b" }),
            ),
        ),
    ] {
        let (status, err) = w.api.call(method, path, Some(&w.root), body).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{method} {path}: {status} {err}"
        );
        assert!(err["code"].is_string(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_settings_are_validated_and_applied() {
    let w = world().await;
    w.import("m", true, false).await;
    w.import("plain", false, false).await;
    let alice = Some(w.alice.as_str());
    let path = "/api/v1/repos/alice/m/mirror";
    let patch = |body: Value| w.api.call("PATCH", path, alice, Some(body));

    let (status, repo) = patch(json!({ "sync_interval": "2h", "enabled": false })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        (
            repo["sync_interval_seconds"].as_i64(),
            repo["mirror_enabled"].as_bool()
        ),
        (Some(7200), Some(false))
    );
    let (_, repo) = patch(json!({ "sync_interval": null })).await;
    assert!(
        repo.get("sync_interval_seconds").is_none(),
        "back to the default: {repo}"
    );
    assert_eq!(repo["mirror_enabled"], false, "untouched fields stay");

    // selective sync: patterns are checked, then shown
    for bad in [
        json!({ "include_refs": ["heads/*"] }),
        json!({ "exclude_refs": ["refs/*/pull/*"] }),
        json!({ "include_refs": ["refs/heads/a b"] }),
    ] {
        let (status, err) = patch(bad.clone()).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_refs")),
            "{bad}"
        );
    }
    let (status, repo) =
        patch(json!({ "include_refs": ["refs/heads/*"], "exclude_refs": ["refs/pull/*"] })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(
        (&repo["include_refs"], &repo["exclude_refs"]),
        (&json!(["refs/heads/*"]), &json!(["refs/pull/*"]))
    );
    let (_, repo) = patch(json!({ "include_refs": [] })).await;
    assert_eq!(
        (&repo["include_refs"], &repo["exclude_refs"]),
        (&json!([]), &json!(["refs/pull/*"])),
        "one list cleared, the other kept"
    );

    // a shorter interval brings a far-off next sync forward
    sqlx::query(
        "UPDATE repositories SET last_synced_at = now() - interval '1 hour',
             next_sync_at = now() + interval '1 day' WHERE name = 'm'",
    )
    .execute(&w.env.pool)
    .await
    .unwrap();
    patch(json!({ "sync_interval": "2h" })).await;
    let hours: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM next_sync_at - now())::float8 / 3600 FROM repositories WHERE name = 'm'",
    )
    .fetch_one(&w.env.pool)
    .await
    .unwrap();
    assert!((0.9..1.1).contains(&hours), "next sync in {hours} h");

    // new upstream with credentials: sealed, shown masked
    let (status, repo) =
        patch(json!({ "mirror_url": "https://carol:tok3n@127.0.0.1:9/x.git" })).await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["mirror_url"], "https://***@127.0.0.1:9/x.git");
    let (url, sealed): (String, Option<String>) =
        sqlx::query_as("SELECT mirror_url, mirror_credentials FROM repositories WHERE name = 'm'")
            .fetch_one(&w.env.pool)
            .await
            .unwrap();
    assert_eq!(url, "https://127.0.0.1:9/x.git");
    assert!(sealed.is_some_and(|s| !s.contains("tok3n")));
    let (_, repo) = patch(json!({ "mirror_url": "https://127.0.0.1:9/y.git" })).await;
    assert_eq!(
        repo["mirror_url"], "https://127.0.0.1:9/y.git",
        "credentials removed with the URL"
    );

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
        (json!({ "sync_interval": 30 }), 422, "invalid_fields"),
        (json!({ "colour": "red" }), 422, "invalid_fields"),
        (json!([1, 2]), 422, "invalid_fields"),
    ] {
        let (got, answer) = patch(body.clone()).await;
        assert_eq!(
            (got.as_u16(), answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
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
    let raw = reqwest::Client::new()
        .patch(format!("{}{path}", w.api.base))
        .bearer_auth(&w.alice)
        .body("enabled=true")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 415);
    let raw = reqwest::Client::new()
        .patch(format!("{}{path}", w.api.base))
        .bearer_auth(&w.alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_removes_row_mirror_jobs_and_deliveries_but_not_during_a_sync() {
    let w = world().await;
    let worker = w.env.spawn_worker();
    w.import("synced", true, false).await;
    let dir = w.env.mirror_path("alice", "synced");
    stasis_testkit::eventually(
        "the import to sync",
        std::time::Duration::from_secs(60),
        || async {
            let (_, s) = w
                .api
                .call(
                    "GET",
                    "/api/v1/repos/alice/synced/mirror/status",
                    None,
                    None,
                )
                .await;
            (s["sync_status"] == "success").then_some(())
        },
    )
    .await;
    assert!(dir.is_dir());
    worker.stop().await;

    // while a worker holds the repository's lock, deletion waits its turn
    let repo_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'synced'")
            .fetch_one(&w.env.pool)
            .await
            .unwrap();
    let leases = Leases::new(w.env.redis.clone(), &w.env.cfg.queue.namespace);
    let held = leases
        .try_acquire(
            &leases.repo_key(repo_id),
            std::time::Duration::from_secs(30),
            0,
        )
        .await
        .unwrap()
        .expect("lock taken");
    let path = "/api/v1/repos/alice/synced";
    let (status, body) = w.api.call("DELETE", path, Some(&w.alice), None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (CONFLICT, Some("conflict"))
    );
    assert!(dir.is_dir(), "nothing removed while locked");
    leases.release(&held).await.unwrap();

    assert_eq!(
        w.status("DELETE", path, Some(&w.alice), None).await,
        NO_CONTENT
    );
    assert!(!dir.exists(), "bare mirror left on disk");
    assert_eq!(w.status("GET", path, Some(&w.alice), None).await, NOT_FOUND);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_jobs")
        .fetch_one(&w.env.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    assert_eq!(
        w.status("DELETE", path, Some(&w.alice), None).await,
        NOT_FOUND
    );

    // a queued job's delivery leaves Redis with it; admins may delete too
    w.import("queued", true, false).await;
    assert_eq!(w.env.waiting_deliveries().await, 1);
    assert_eq!(
        w.status("DELETE", "/api/v1/repos/alice/queued", Some(&w.root), None)
            .await,
        NO_CONTENT
    );
    assert_eq!(w.env.waiting_deliveries().await, 0);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let w = world().await;
    let (status, doc) = w.api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let routes = [
        ("get", "/api/v1/user"),
        ("put", "/api/v1/user/notify"),
        ("post", "/api/v1/repos/import"),
        ("get", "/api/v1/repos"),
        ("get", "/api/v1/users/{owner}/repos"),
        ("get", "/api/v1/repos/{owner}/{repo}"),
        ("delete", "/api/v1/repos/{owner}/{repo}"),
        ("post", "/api/v1/repos/{owner}/{repo}/sync"),
        ("patch", "/api/v1/repos/{owner}/{repo}/mirror"),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/status"),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/history"),
        ("post", "/api/v1/hooks/{owner}/{repo}"),
        ("get", "/api/v1/admin/jobs"),
        ("get", "/api/v1/admin/jobs/{id}"),
        ("post", "/api/v1/admin/jobs/{id}/retry"),
        ("post", "/api/v1/admin/jobs/{id}/discard"),
        ("get", "/api/v1/admin/queue"),
        ("post", "/api/v1/admin/scheduler/pause"),
        ("post", "/api/v1/admin/scheduler/resume"),
        ("get", "/api/v1/admin/mirror/config"),
        ("put", "/api/v1/admin/mirror/config"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    ];
    let mut listed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed += 1;
            assert!(
                routes.contains(&(method.as_str(), path.as_str())),
                "undocumented in this test: {method} {path}"
            );
        }
    }
    assert_eq!(listed, routes.len());
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
        // every route answers (no 405/404 from the router for a documented route)
        let concrete = path
            .replace("{owner}", "alice")
            .replace("{repo}", "nothing")
            .replace("{id}", &uuid::Uuid::nil().to_string());
        let got = w
            .status(&method.to_uppercase(), &concrete, Some(&w.root), None)
            .await;
        assert!(got != 405 && got < 500, "{method} {path}: {got}");
    }
    let page = reqwest::get(format!("{}/api/v1/docs", w.api.base))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/api/v1/openapi.json"));
}
