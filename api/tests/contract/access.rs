//! Who may do what to a public and a private repository: owner, another user, an admin,
//! anonymous and a revoked token, route by route.

use serde_json::{json, Value};

use crate::{world, ACCEPTED, FORBIDDEN, NOT_FOUND, OK, UNAUTH};

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_repository_looks_like_a_private_one_and_a_missing_route_is_404_json() {
    let w = world().await;
    w.import("priv", true, true).await;
    let (status, body) = w
        .api
        .call("GET", "/api/v1/repos/alice/none", Some(&w.mallory), None)
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (NOT_FOUND, Some("not_found"))
    );
    let (status, hidden) = w
        .api
        .call("GET", "/api/v1/repos/alice/priv", Some(&w.mallory), None)
        .await;
    assert_eq!(
        (status.as_u16(), &hidden["code"]),
        (NOT_FOUND, &body["code"]),
        "{hidden}"
    );
    let (status, body) = w.api.call("GET", "/api/v1/nowhere", None, None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (NOT_FOUND, Some("not_found"))
    );
}
