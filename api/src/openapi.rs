//! The OpenAPI document (generated from the handlers' declarations) and a docs page
//! that renders it without any CDN.

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stasis Mirror Sync",
        description = "Keeps git mirrors in sync with their upstreams. Errors are \
                       `{\"error\": ..., \"code\": ...}`.",
    ),
    modifiers(&BearerToken),
    tags(
        (name = "users", description = "The signed-in user"),
        (name = "repos", description = "Repositories"),
        (name = "mirrors", description = "Mirror sync, status, history and settings"),
        (name = "admin", description = "Operators (admin token)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct Base;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn base() -> Document {
    Base::openapi()
}

/// `GET /api/v1/openapi.json` and `GET /api/v1/docs`.
pub fn serve<S: Clone + Send + Sync + 'static>(doc: Document) -> Router<S> {
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(doc) }),
        )
        .route(
            "/api/v1/docs",
            get(|| async { Html(include_str!("docs.html")) }),
        )
}
