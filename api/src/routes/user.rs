use axum::Json;
use serde::Serialize;

use crate::auth::Authenticated;
use crate::dto::ErrorBody;

/// Who a token belongs to: the web UI checks a pasted token with it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentUser {
    pub username: String,
    pub is_admin: bool,
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/user", tag = "users",
    security(("bearer" = [])),
    responses((status = 200, body = CurrentUser), (status = 401, body = ErrorBody))
)]
pub async fn current(Authenticated(user): Authenticated) -> Json<CurrentUser> {
    Json(CurrentUser {
        username: user.username,
        is_admin: user.is_admin,
    })
}
