//! Request counts and latency labelled by route template (never the raw path, whose
//! owner and repository names are unbounded) and by method, itself a closed set: any
//! client can send `FOOBAR /` before authenticating, so unknown methods share `other`.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The route template a request matched, carried on its response from inside the
/// router (where it is known) to the access log outside it, which also sees what the
/// router answers on its own (a method a route does not allow).
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

pub async fn tag_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(RouteTemplate(route));
    response
}

/// The route template on a response, `unmatched` for none.
pub fn route_of(response: &Response) -> &str {
    response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str())
}

pub fn record(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let route = route.to_owned();
    metrics::counter!("stasis_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("stasis_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
}

/// The method as a label: one of HTTP's standard methods, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |&(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_closed_set() {
        for (m, want) in [
            ("GET", "GET"),
            ("DELETE", "DELETE"),
            ("FOOBAR", "other"),
            ("get", "other"),
            ("PROPFIND", "other"),
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&method), want, "{m}");
        }
    }
}
