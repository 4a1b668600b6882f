//! The OpenAPI document lists every route, each documented route answers, and the
//! docs page points at the document.

use reqwest::StatusCode;

use crate::world;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        ("patch", "/api/v1/repos/{owner}/{repo}"),
        ("delete", "/api/v1/repos/{owner}/{repo}"),
        ("post", "/api/v1/repos/{owner}/{repo}/sync"),
        ("patch", "/api/v1/repos/{owner}/{repo}/mirror"),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/status"),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/history"),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/deploy-key"),
        ("post", "/api/v1/repos/{owner}/{repo}/mirror/deploy-key"),
        ("put", "/api/v1/repos/{owner}/{repo}/mirror/deploy-key"),
        ("delete", "/api/v1/repos/{owner}/{repo}/mirror/deploy-key"),
        (
            "post",
            "/api/v1/repos/{owner}/{repo}/mirror/host-keys/detect",
        ),
        ("get", "/api/v1/repos/{owner}/{repo}/mirror/host-keys"),
        ("put", "/api/v1/repos/{owner}/{repo}/mirror/host-keys"),
        ("post", "/api/v1/hooks/{owner}/{repo}"),
        ("get", "/api/v1/admin/jobs"),
        ("get", "/api/v1/admin/jobs/{id}"),
        ("post", "/api/v1/admin/jobs/{id}/retry"),
        ("post", "/api/v1/admin/jobs/{id}/discard"),
        ("get", "/api/v1/admin/queue"),
        ("get", "/api/v1/admin/queue/dead"),
        ("delete", "/api/v1/admin/queue/dead"),
        ("get", "/api/v1/admin/activity"),
        ("post", "/api/v1/admin/mirrors/sync"),
        ("get", "/api/v1/admin/storages"),
        ("post", "/api/v1/admin/mirrors/{owner}/{repo}/move"),
        ("post", "/api/v1/admin/storages/{name}/drain"),
        ("get", "/api/v1/admin/moves"),
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
    // operation ids a generated client can use as method names: unique, camelCase,
    // a verb and what it acts on (not `list`, `get`, `status`)
    let mut ids = std::collections::BTreeSet::new();
    for (method, path) in routes {
        let id = doc["paths"][path][method]["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric())
                && id.chars().any(|c| c.is_ascii_uppercase()),
            "{method} {path}: operationId `{id}`"
        );
        assert!(ids.insert(id.clone()), "operationId `{id}` used twice");
    }
    assert_eq!(doc["servers"][0]["url"], "/", "{}", doc["servers"]);
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
    // the missing LFS objects' count and the request to try them again are documented
    let status = &doc["components"]["schemas"]["MirrorStatus"];
    assert!(
        status["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "lfs_missing_objects")),
        "{status}"
    );
    // a running sync's progress, with the phases a client may meet
    assert!(status["properties"]["progress"].is_object(), "{status}");
    let phases = &doc["components"]["schemas"]["Phase"]["enum"];
    assert_eq!(
        phases,
        &serde_json::json!(["receiving_objects", "resolving_deltas", "done"]),
        "{phases}"
    );
    let sync = &doc["paths"]["/api/v1/repos/{owner}/{repo}/sync"]["post"]["parameters"];
    assert!(
        sync.as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "lfs_retry")),
        "{sync}"
    );
    // both listings take `sort` with its closed set of values; a job's detail names its
    // attempts `runs`, apart from the `attempts` count
    for path in ["/api/v1/repos", "/api/v1/users/{owner}/repos"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let sort = params.iter().find(|p| p["name"] == "sort");
        assert_eq!(
            sort.map(|p| p["schema"]["pattern"].clone()),
            Some(serde_json::json!(
                "^-?(name|status|last_success|next_sync)$"
            )),
            "{path}"
        );
    }
    let detail = &doc["components"]["schemas"]["JobDetail"];
    assert!(detail.to_string().contains("\"runs\""), "{detail}");
    let page = reqwest::get(format!("{}/api/v1/docs", w.api.base))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/api/v1/openapi.json"));
}
