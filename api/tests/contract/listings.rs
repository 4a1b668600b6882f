//! Repository listings: private repositories hidden from all but their owner and
//! admins, filters and paging, and queries refused as 400s.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{world, World, BAD, NOT_FOUND};

fn names(page: &Value) -> Vec<String> {
    page["repos"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|r| r["full_name"].as_str().unwrap().to_owned())
        .collect()
}

/// alice's public mirror `pub` (its last sync failed), private mirror `priv` (queued)
/// and plain repository `plain`.
async fn three_repositories() -> World {
    let w = world().await;
    w.import("pub", true, false).await;
    w.import("priv", true, true).await;
    w.import("plain", false, false).await;
    sqlx::query("UPDATE repositories SET sync_status = 'failed' WHERE name = 'pub'")
        .execute(&w.env.pool)
        .await
        .unwrap();
    w
}

async fn list(w: &World, path: &str, token: Option<&str>) -> Value {
    let (status, page) = w.api.call("GET", path, token, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {page}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_hide_private_repositories_from_all_but_their_owner_and_admins() {
    let w = three_repositories().await;
    let everyone = ["alice/plain", "alice/pub"];
    let all = ["alice/plain", "alice/priv", "alice/pub"];
    for (token, expected) in [
        (None, &everyone[..]),
        (Some(w.mallory.as_str()), &everyone[..]),
        (Some(w.alice.as_str()), &all[..]),
        (Some(w.root.as_str()), &all[..]),
    ] {
        let page = list(&w, "/api/v1/repos", token).await;
        assert_eq!(names(&page), expected, "{token:?}");
        assert_eq!(page["total"], expected.len());
        let page = list(&w, "/api/v1/users/alice/repos", token).await;
        assert_eq!(names(&page), expected, "{token:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_filter_by_kind_and_status_and_page() {
    let w = three_repositories().await;
    let alice = Some(w.alice.as_str());
    for (query, expected) in [
        ("mirror=true", vec!["alice/priv", "alice/pub"]),
        ("mirror=false", vec!["alice/plain"]),
        ("sync_status=failed", vec!["alice/pub"]),
        ("mirror=true&sync_status=queued", vec!["alice/priv"]),
        // the public `syncing` covers an import waiting for a worker
        ("sync_status=syncing", vec!["alice/plain", "alice/priv"]),
        ("sync_status=idle", vec![]),
        ("per_page=1&page=2", vec!["alice/priv"]),
        ("per_page=2&page=3", vec![]),
    ] {
        let page = list(&w, &format!("/api/v1/repos?{query}"), alice).await;
        assert_eq!(names(&page), expected, "{query}");
    }
    let page = list(&w, "/api/v1/repos?per_page=1", alice).await;
    assert_eq!(
        (page["total"].as_i64(), page["per_page"].as_i64()),
        (Some(3), Some(1))
    );
    // a hard-failed mirror's public status is `failed`, and found by its filter
    sqlx::query("UPDATE repositories SET sync_status = 'hard_failed' WHERE name = 'priv'")
        .execute(&w.env.pool)
        .await
        .unwrap();
    for (query, expected) in [
        ("sync_status=failed", vec!["alice/priv", "alice/pub"]),
        ("sync_status=hard_failed", vec!["alice/priv"]),
        ("sync_status=syncing", vec!["alice/plain"]),
    ] {
        let page = list(&w, &format!("/api/v1/repos?{query}"), alice).await;
        assert_eq!(names(&page), expected, "{query}");
    }
    let page = list(&w, "/api/v1/repos?mirror=true", alice).await;
    let shown: Vec<_> = page["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["sync_status"].clone(), r["sync_state"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!("failed"), json!("hard_failed")),
            (json!("failed"), json!("failed"))
        ]
    );
    assert_eq!(
        w.status("GET", "/api/v1/users/nobody/repos", alice, None)
            .await,
        NOT_FOUND
    );
}

/// The fleet view's filters: the upstream's host (any case, ignoring user, port and
/// path) and a substring of `owner/name` in which `%` and `_` are plain characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_filter_by_upstream_host_and_by_name_search() {
    let w = three_repositories().await;
    // upstreams a test cannot reach, set where the listing reads them
    for (name, url) in [
        ("pub", "https://GitHub.com/rust-lang/rust.git"),
        ("priv", "https://mirror@git.example.org:8443/x%_y/repo"),
    ] {
        sqlx::query("UPDATE repositories SET mirror_url = $1 WHERE name = $2")
            .bind(url)
            .bind(name)
            .execute(&w.env.pool)
            .await
            .unwrap();
    }
    let root = Some(w.root.as_str());
    for (query, expected) in [
        ("host=github.com", vec!["alice/pub"]),
        ("host=GITHUB.COM", vec!["alice/pub"]),
        ("host=git.example.org", vec!["alice/priv"]),
        ("host=example.org", vec![]),
        ("q=PRI", vec!["alice/priv"]),
        ("q=alice/p", vec!["alice/plain", "alice/priv", "alice/pub"]),
        ("q=%25", vec![]),
        ("q=_", vec![]),
        ("q=%20", vec!["alice/plain", "alice/priv", "alice/pub"]),
        ("mirror=true&q=p&host=github.com", vec!["alice/pub"]),
    ] {
        let page = list(&w, &format!("/api/v1/repos?{query}"), root).await;
        assert_eq!(names(&page), expected, "{query}");
        assert_eq!(page["total"], expected.len(), "{query}");
    }
    // another user's private mirror stays hidden whatever the filter
    let page = list(&w, "/api/v1/repos?host=git.example.org", Some(&w.mallory)).await;
    assert_eq!(names(&page), Vec::<String>::new());
}

/// The fleet's orders: by state (the most urgent first), by last success and by next
/// sync, each reversed by `-`, ties by `owner/name`; pages of a sorted listing add up
/// to the whole listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_sort_by_status_last_success_and_next_sync() {
    let w = world().await;
    // state, hours since the last success, minutes to the next sync
    let fleet = [
        ("a", "success", Some(1), Some(120)),
        ("b", "hard_failed", None, None),
        ("c", "failed", Some(3), Some(10)),
        ("d", "idle", None, Some(60)),
        ("e", "syncing", Some(2), Some(30)),
        ("f", "failed", None, None),
    ];
    for (name, state, synced, next) in fleet {
        w.import(name, true, false).await;
        sqlx::query(
            "UPDATE repositories SET sync_status = $2,
                 sync_error = CASE WHEN $2 LIKE '%failed' THEN 'upstream said no' END,
                 last_synced_at = now() - make_interval(hours => $3),
                 next_sync_at = now() + make_interval(mins => $4)
             WHERE name = $1",
        )
        .bind(name)
        .bind(state)
        .bind(synced)
        .bind(next)
        .execute(&w.env.pool)
        .await
        .unwrap();
    }
    let expected =
        |order: &str| -> Vec<String> { order.chars().map(|c| format!("alice/{c}")).collect() };
    for (sort, order) in [
        ("name", "abcdef"),
        ("-name", "fedcba"),
        ("status", "bcfeda"),
        ("-status", "adecfb"),
        ("last_success", "bdfcea"),
        ("-last_success", "aecbdf"),
        ("next_sync", "cedabf"),
        ("-next_sync", "bfadec"),
    ] {
        for (listing, token) in [
            ("/api/v1/repos", Some(w.root.as_str())),
            ("/api/v1/users/alice/repos", None),
        ] {
            let page = list(&w, &format!("{listing}?mirror=true&sort={sort}"), token).await;
            assert_eq!(names(&page), expected(order), "{listing} sort={sort}");
        }
        // page by page, the same order: no mirror twice, none left out
        let mut paged = Vec::new();
        for n in 1..=3 {
            let page = list(
                &w,
                &format!("/api/v1/repos?mirror=true&sort={sort}&per_page=2&page={n}"),
                None,
            )
            .await;
            assert_eq!(page["total"], 6);
            paged.extend(names(&page));
        }
        assert_eq!(paged, expected(order), "paged, sort={sort}");
    }
    // without `sort`, the order it always had
    let page = list(&w, "/api/v1/repos?mirror=true", None).await;
    assert_eq!(names(&page), expected("abcdef"));
    // a filter and a sort together: the failing ones, hard-failed first
    let page = list(&w, "/api/v1/repos?sync_status=failed&sort=status", None).await;
    assert_eq!(names(&page), expected("bcf"));
    // what a fleet table shows comes with the listing: the error and the next sync
    let repos = page["repos"].as_array().unwrap();
    assert_eq!(repos[1]["sync_error"], "upstream said no", "{page}");
    assert_eq!(repos[1]["sync_state"], "failed");
    assert!(repos[1]["next_sync_at"].is_string(), "{page}");
    assert!(
        repos[0].get("next_sync_at").is_none(),
        "unscheduled: {page}"
    );
    let page = list(
        &w,
        "/api/v1/repos?mirror=true&sort=-status&per_page=1",
        None,
    )
    .await;
    assert_eq!(page["repos"][0]["sync_state"], "success");
    assert!(page["repos"][0].get("sync_error").is_none(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_listing_queries_are_400_invalid_query() {
    let w = world().await;
    let alice = Some(w.alice.as_str());
    for query in [
        "per_page=0",
        "per_page=101",
        "page=0",
        "sync_status=bogus",
        "sort=bogus",
        "sort=",
        "sort=-",
        "sort=--name",
        "sort=Status",
        "sort=name,status",
        "mirror=maybe",
        "colour=red",
        "page=-1",
        format!("q={}", "x".repeat(101)).as_str(),
        format!("host={}", "h".repeat(254)).as_str(),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_path_a_query_or_a_body_is_refused_not_a_500() {
    let w = three_repositories().await;
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
