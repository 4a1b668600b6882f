//! The service itself: health and readiness, the web UI's files, and who a token
//! belongs to.

use reqwest::StatusCode;
use serde_json::json;

use stasis_testkit::TestEnv;

use crate::common::Api;
use crate::site;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_ok() {
    let s = site().await;
    let (status, body) = s.api.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = s.api.call("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_learns_who_it_belongs_to_and_no_token_is_401() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_is_served_with_its_types_and_a_strict_csp() {
    let env = TestEnv::new().await;
    let api = Api::start(&env).await;
    for (path, kind, needle) in [
        ("/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "./mirrors.js"),
        (
            "/ui/mirrors.js",
            "text/javascript",
            "export async function mirrors",
        ),
        (
            "/ui/jobs.js",
            "text/javascript",
            "export async function showJobs",
        ),
        (
            "/ui/charts.js",
            "text/javascript",
            "export function activityChart",
        ),
        ("/ui/app.css", "text/css", ".spin"),
        ("/ui/lib.js", "text/javascript", "export async function api"),
        (
            "/ui/operator.js",
            "text/javascript",
            "export async function operator",
        ),
        (
            "/ui/mirror.js",
            "text/javascript",
            "export async function mirrorPage",
        ),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
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
