//! The web UI (`web/`), embedded in the binary so a deployment is one file. Plain ES
//! modules with no inline script, so the page runs under a strict CSP.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const LIB_JS: &str = include_str!("../../web/lib.js");
const OPERATOR_JS: &str = include_str!("../../web/operator.js");
const MIRROR_JS: &str = include_str!("../../web/mirror.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const FAVICON: &str = include_str!("../../web/favicon.svg");

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
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/lib.js",
            get(|| async { asset("text/javascript; charset=utf-8", LIB_JS) }),
        )
        .route(
            "/ui/operator.js",
            get(|| async { asset("text/javascript; charset=utf-8", OPERATOR_JS) }),
        )
        .route(
            "/ui/mirror.js",
            get(|| async { asset("text/javascript; charset=utf-8", MIRROR_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        // browsers ask for /favicon.ico whatever the page says
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", FAVICON) }),
        )
}
