//! Bearer-token authentication as extractors: `Caller` when a token is optional,
//! `User` when one is required. A token that is sent but unknown is always a 401.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use stasis_shared::db::repos::Repo;
use stasis_shared::db::users::{self, User};

use crate::credential::Credential;
use crate::error::ApiError;
use crate::state::AppState;

/// Who sent the request, as the guard established it from the one reading of the
/// header its rate limit used (so the two cannot disagree about the caller).
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    User(User),
    /// A malformed token, or one the database does not know.
    Invalid,
}

impl Identity {
    /// Without the guard in front (a router assembled without it), the same reading
    /// and the same lookup.
    async fn resolve(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(match Credential::from_headers(&parts.headers) {
            Credential::Absent => Identity::Anonymous,
            Credential::Malformed => Identity::Invalid,
            Credential::Bearer(token) => match users::find_by_token(&state.pool, &token).await? {
                Some(user) => Identity::User(user),
                None => Identity::Invalid,
            },
        })
    }
}

/// The caller, if a token was sent.
pub struct Caller(pub Option<User>);

/// A caller that must be signed in.
pub struct Authenticated(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let identity = match parts.extensions.get::<Identity>() {
            Some(identity) => identity.clone(),
            None => Identity::resolve(parts, state).await?,
        };
        match identity {
            Identity::Anonymous => Ok(Caller(None)),
            Identity::User(user) => Ok(Caller(Some(user))),
            Identity::Invalid => Err(ApiError::BadToken),
        }
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
