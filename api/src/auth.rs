//! Bearer-token authentication as extractors: `Caller` when a token is optional,
//! `User` when one is required. A token that is sent but unknown is always a 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use stasis_shared::db::repos::Repo;
use stasis_shared::db::users::{self, User};

use crate::error::ApiError;
use crate::state::AppState;

/// The caller, if a token was sent.
pub struct Caller(pub Option<User>);

/// A caller that must be signed in.
pub struct Authenticated(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Caller(None));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::BadToken)?;
        let user = users::find_by_token(&state.pool, token)
            .await?
            .ok_or(ApiError::BadToken)?;
        Ok(Caller(Some(user)))
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller(Some(user)) => Ok(Authenticated(user)),
            Caller(None) => Err(ApiError::MissingToken),
        }
    }
}

pub fn can_see(user: Option<&User>, repo: &Repo) -> bool {
    !repo.private || user.is_some_and(|u| u.is_admin || u.id == repo.owner_id)
}

pub fn can_manage(user: &User, repo: &Repo) -> bool {
    user.is_admin || user.id == repo.owner_id
}

/// A caller that must hold an admin token: operator endpoints.
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(user) = Authenticated::from_request_parts(parts, state).await?;
        if !user.is_admin {
            return Err(ApiError::AdminOnly);
        }
        Ok(Admin(user))
    }
}
