//! The web UI (`web/`), embedded in the binary so a deployment is one file. Plain ES
//! modules with no inline script, so the page runs under a strict CSP.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the UI: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    ("/ui/app.js", JS, include_str!("../../web/app.js")),
    ("/ui/lib.js", JS, include_str!("../../web/lib.js")),
    ("/ui/operator.js", JS, include_str!("../../web/operator.js")),
    ("/ui/mirror.js", JS, include_str!("../../web/mirror.js")),
    ("/ui/mirrors.js", JS, include_str!("../../web/mirrors.js")),
    ("/ui/jobs.js", JS, include_str!("../../web/jobs.js")),
    ("/ui/charts.js", JS, include_str!("../../web/charts.js")),
    ("/ui/fleet.js", JS, include_str!("../../web/fleet.js")),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "/ui/favicon.svg",
        SVG,
        include_str!("../../web/favicon.svg"),
    ),
    // browsers ask for /favicon.ico whatever the page says
    ("/favicon.ico", SVG, include_str!("../../web/favicon.svg")),
];

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // assets change with the binary; a restart must not be hidden by a cache
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}
