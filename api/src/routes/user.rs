use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_shared::db::users;
use stasis_shared::git::url::redact_url;

use crate::auth::Authenticated;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Who a token belongs to: the web UI checks a pasted token with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentUser {
    pub username: String,
    pub is_admin: bool,
    /// Where failure notifications about this user's mirrors go (credentials masked).
    pub notify_url: Option<String>,
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/user", tag = "users", operation_id = "getCurrentUser",
    security(("bearer" = [])),
    responses((status = 200, body = CurrentUser), (status = 401, body = ErrorBody))
)]
pub async fn current(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
) -> Result<Json<CurrentUser>, ApiError> {
    let notify_url = users::notify_url(&state.pool, user.id).await?;
    Ok(Json(CurrentUser {
        username: user.username,
        is_admin: user.is_admin,
        notify_url: notify_url.as_deref().map(redact_url),
    }))
}

/// `PUT /user/notify`: `null` stops notifications to this user's receiver.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// An http(s) URL that receives signed JSON events when one of this user's mirrors
    /// fails, stops being retried, or recovers.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
}

/// Sets where this user's failure notifications go.
#[utoipa::path(
    put, path = "/user/notify", tag = "users", operation_id = "setNotifyUrl",
    request_body = NotifyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = CurrentUser),
        (status = 400, description = "Not an http(s) URL, or an internal address", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
pub async fn set_notify(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiJson(req): ApiJson<NotifyRequest>,
) -> Result<Json<CurrentUser>, ApiError> {
    let url = match req.url.as_deref().map(str::trim) {
        None => None,
        Some(url) => Some(crate::validate::notify_url(&state, url).await?),
    };
    users::set_notify_url(&state.pool, user.id, url.as_deref()).await?;
    Ok(Json(CurrentUser {
        username: user.username,
        is_admin: user.is_admin,
        notify_url: url.as_deref().map(redact_url),
    }))
}
