//! One error type for every handler, one mapping to HTTP: `{"error": ..., "code": ...}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("invalid or revoked token")]
    BadToken,
    #[error("webhook signature or token missing or wrong")]
    BadSignature,
    #[error("only the repository owner or an admin may do this")]
    Forbidden,
    #[error("this needs an admin token")]
    AdminOnly,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body must be JSON with `Content-Type: application/json`")]
    UnsupportedMedia,
    #[error("request body too large")]
    TooLarge,
    #[error("rate limit exceeded: retry in {0}s")]
    RateLimited(u64),
    #[error("you own {0} repositories, the most allowed (`mirror.max_per_user`)")]
    QuotaExceeded(u32),
    #[error("server busy, try again later")]
    Overloaded,
    #[error("request took too long")]
    Timeout,
    /// The upstream could not be reached or did not answer as asked.
    #[error("{0}")]
    Upstream(String),
    /// No storage takes new mirrors now (none with a live worker and room).
    #[error("{0}")]
    NoStorage(String),
    /// A backend is down: `postgres` or `redis`.
    #[error("{0} unavailable, try again later")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The `code` of its JSON body.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::BadSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
            ApiError::Forbidden | ApiError::AdminOnly => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields"),
            ApiError::UnsupportedMedia => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NoStorage(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_storage"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering request");
        }
        if let ApiError::Unavailable(dependency) = &self {
            // outages here last seconds (a restart); the client may retry soon
            return (
                status,
                [(axum::http::header::RETRY_AFTER, "1")],
                Json(json!({ "error": self.to_string(), "code": code, "dependency": dependency })),
            )
                .into_response();
        }
        (
            status,
            Json(json!({ "error": self.to_string(), "code": code })),
        )
            .into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Postgres text cannot hold NUL (SQLSTATE 22021): whichever field or parameter
        // carried one, it is the client's input, not a server fault.
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("22021") {
                return ApiError::BadRequest(
                    "invalid_text",
                    "text must be UTF-8 without NUL characters".into(),
                );
            }
        }
        stasis_shared::error::count_backend_error(Some("postgres"), "request");
        if stasis_shared::db::outage(&e) {
            ApiError::Unavailable("postgres")
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<stasis_shared::Error> for ApiError {
    fn from(e: stasis_shared::Error) -> Self {
        if !matches!(e, stasis_shared::Error::Db(_)) {
            stasis_shared::error::count_backend_error(e.backend(), "request");
        }
        match e {
            stasis_shared::Error::Db(db) => db.into(),
            stasis_shared::Error::Redis(_) | stasis_shared::Error::Push(_) => {
                ApiError::Unavailable("redis")
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest("invalid_path", rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMedia,
            other => ApiError::BadRequest("invalid_json", other.body_text()),
        }
    }
}
