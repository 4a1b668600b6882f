//! The admin's fleet actions: a sync of many mirrors in one request.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_shared::db::users::User;
use stasis_shared::domain::names::split_repo;
use stasis_shared::domain::SyncReason;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::dto::{ErrorBody, SyncAccepted};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::admin::invalid_repo;
use crate::routes::mirror::{managed_mirror, request_sync};
use crate::state::AppState;

/// The most mirrors one bulk request names: a page of the fleet view.
const MAX_BULK: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"repos": ["alice/linux", "bob/git"], "force": false}))]
pub struct BulkSyncRequest {
    /// `owner/name` of each mirror, 1 to 100.
    #[schema(min_items = 1, max_items = 100)]
    pub repos: Vec<String>,
    /// Start each sync now even within `mirror.min_manual_interval` of its last one.
    #[serde(default)]
    pub force: bool,
}

/// What became of one mirror of a bulk sync: `accepted`, or `error` with its code.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkSyncItem {
    pub repo: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<SyncAccepted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkSync {
    /// One per requested mirror, in the request's order.
    pub results: Vec<BulkSyncItem>,
    pub accepted: usize,
    pub refused: usize,
}

/// "Sync now" for many mirrors: each one as `POST /repos/{owner}/{repo}/sync` would do
/// it (a queued or running sync is reused; a failed mirror's sync is its retry). A
/// mirror that cannot be synced is reported in its item, not as the request's failure.
#[utoipa::path(post, path = "/admin/mirrors/sync", tag = "admin", operation_id = "syncMirrors", request_body = BulkSyncRequest,
    responses((status = 200, body = BulkSync), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sync_many(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<BulkSyncRequest>,
) -> Result<Json<BulkSync>, ApiError> {
    if req.repos.is_empty() || req.repos.len() > MAX_BULK {
        return Err(ApiError::BadRequest(
            "invalid_repos",
            format!(
                "repos must name 1 to {MAX_BULK} mirrors, not {}",
                req.repos.len()
            ),
        ));
    }
    let mut results = Vec::with_capacity(req.repos.len());
    for full in req.repos {
        let outcome = sync_one(&state, &admin, &full, req.force).await;
        let item = match outcome {
            Ok(accepted) => BulkSyncItem {
                repo: full,
                accepted: Some(accepted),
                error: None,
            },
            // a backend outage fails the request: every later item would fail alike
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(e),
            Err(e) => BulkSyncItem {
                repo: full,
                accepted: None,
                error: Some(ErrorBody::of(&e)),
            },
        };
        results.push(item);
    }
    let accepted = results.iter().filter(|r| r.accepted.is_some()).count();
    Ok(Json(BulkSync {
        refused: results.len() - accepted,
        accepted,
        results,
    }))
}

async fn sync_one(
    state: &AppState,
    admin: &User,
    full: &str,
    force: bool,
) -> Result<SyncAccepted, ApiError> {
    let (owner, name) = split_repo(full).map_err(invalid_repo)?;
    let repo = managed_mirror(state, admin, &owner, &name).await?;
    request_sync(state, repo.id, SyncReason::Manual, force).await
}
