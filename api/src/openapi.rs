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
    servers((url = "/", description = "This server: every path is absolute")),
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

/// The answers the guard in front of every `/api/v1` route may give, whatever the
/// handler: rate limited (429 with `Retry-After`), body too large, overloaded, timed out.
pub fn guarded_responses(doc: &mut Document) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str, retry_after: bool| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build();
        let mut response = ResponseBuilder::new()
            .description(description)
            .content("application/json", content);
        if retry_after {
            let seconds = ObjectBuilder::new().schema_type(Type::Integer).build();
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(seconds)
                    .description(Some("Seconds until the budget allows another request"))
                    .build(),
            );
        }
        response.build()
    };
    let guard = [
        ("413", error("Request body over `api.max_body_size`", false)),
        ("429", error("Over this client's rate limit (`ratelimit.*`)", true)),
        ("503", error("Too many requests in flight (`api.max_concurrent_requests`), or a backend unavailable", false)),
        ("504", error("No answer within `api.request_timeout`", false)),
    ];
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ]
        .into_iter()
        .flatten()
        {
            for (status, response) in &guard {
                op.responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| response.clone().into());
            }
        }
    }
}
