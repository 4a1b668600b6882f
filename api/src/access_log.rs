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

use crate::http_metrics::{self, method_label};

pub const REQUEST_ID: &str = "x-request-id";

/// Outside the router: every answer passes here, with its request id, counted and
/// logged.
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
    let span = tracing::info_span!("request", request_id = %id, method);
    let mut response = next.run(req).instrument(span.clone()).await;
    response.headers_mut().insert(REQUEST_ID, value);
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let route = http_metrics::route_of(&response);
    http_metrics::record(method, route, status, elapsed);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(route, status, duration_ms, "request served"));
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
