//! One `info` line per request (method, route template, status, duration) and a request
//! id every log line of the request carries: taken from the client's `X-Request-Id` when
//! it is a plain token, else made here, and echoed in the response so a user's report
//! finds the server's lines. The raw path and query are never logged: they name owners
//! and repositories and may carry a webhook's token.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::http_metrics::{method_label, route_of};

pub const REQUEST_ID: &str = "x-request-id";

pub async fn record(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let value = HeaderValue::from_str(&id).expect("a checked token or a uuid is a header value");
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let method = method_label(req.method());
    let route = route_of(&req);
    let span = tracing::info_span!("request", request_id = %id, method, route = %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    response.headers_mut().insert(REQUEST_ID, value);
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, duration_ms, "request served"));
    response
}

/// A client's id is kept only when it cannot forge log lines or grow without bound.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn only_plain_tokens_are_kept() {
        assert!(acceptable("3f2a-11.req:7"));
        assert!(!acceptable(""));
        assert!(!acceptable("a b"));
        assert!(!acceptable("x\ny"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
