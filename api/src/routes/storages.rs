//! Named storages for operators: what each holds and whether it takes new mirrors, and
//! moving mirrors between them (one, or a bounded batch off a storage being drained).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_shared::db::repos;
use stasis_shared::db::storages::{self, Move, NotMoved, MOVE_STATES};
use stasis_shared::moves::{self, Drained, Refused};
use stasis_shared::placement::{self, Fitness};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::validate;

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageList {
    pub storages: Vec<Fitness>,
    /// `storage.min_free_bytes`: a storage with less free space takes no new mirrors.
    pub min_free_bytes: u64,
}

/// Every configured storage: live workers, free space, mirrors and bytes on it, and
/// whether it takes new mirrors (and why not).
#[utoipa::path(get, path = "/admin/storages", tag = "admin", operation_id = "listStorages",
    responses((status = 200, body = StorageList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Json<StorageList>, ApiError> {
    Ok(Json(StorageList {
        storages: placement::fitness(&state.cfg, &state.pool).await?,
        min_free_bytes: state.cfg.storage.min_free_bytes,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The storage to move the mirror to.
    #[schema(max_length = 32)]
    pub storage: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MoveAccepted {
    pub message: String,
    pub move_id: i64,
    /// The sync that moves it (an already pending one of the mirror's, if any).
    pub job_id: Uuid,
}

/// Moves a mirror to another storage: a worker of that storage clones it afresh from
/// its upstream, and the mirror switches once that sync succeeded; until then it stays
/// where it is, syncing as before. A failed move leaves it there (see `GET /admin/moves`).
#[utoipa::path(post, path = "/admin/mirrors/{owner}/{repo}/move", tag = "admin", operation_id = "moveMirror",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body = MoveRequest,
    responses(
        (status = 202, body = MoveAccepted),
        (status = 400, description = "`invalid_storage`: not configured, or read-only", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "On that storage already, or moving", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn move_mirror(
    State(state): State<AppState>,
    _: Admin,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> Result<(StatusCode, Json<MoveAccepted>), ApiError> {
    moves::check_target(&state.cfg, &req.storage).map_err(refused)?;
    let repo = repos::find_by_name(&state.pool, &owner, &name)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    let begun = moves::begin(&state.pool, &state.jobs, repo.id, &req.storage)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    match begun {
        Ok(begun) => Ok((
            StatusCode::ACCEPTED,
            Json(MoveAccepted {
                message: format!("moving {owner}/{name} to storage {}", req.storage),
                move_id: begun.move_id,
                job_id: begun.job_id,
            }),
        )),
        Err(NotMoved::AlreadyThere) => Err(ApiError::Conflict(format!(
            "{owner}/{name} is on storage {} already",
            req.storage
        ))),
        Err(NotMoved::Moving(to)) => Err(ApiError::Conflict(format!(
            "{owner}/{name} is moving to storage {to} already"
        ))),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Where the mirrors go; omitted: each to a storage chosen as for a new mirror.
    #[serde(default)]
    #[schema(max_length = 32)]
    pub to: Option<String>,
    /// Only this owner's mirrors.
    #[serde(default)]
    pub owner: Option<String>,
    /// The most mirrors this request moves, 1 to 1,000 (default 100); oldest first.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Moves up to `limit` mirrors off a storage (mark it `read_only` in the configuration
/// first, so it takes no new ones meanwhile); call again until `remaining` is 0.
#[utoipa::path(post, path = "/admin/storages/{name}/drain", tag = "admin", operation_id = "drainStorage",
    params(("name" = String, Path)),
    request_body = DrainRequest,
    responses(
        (status = 202, body = Drained),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such storage", body = ErrorBody),
        (status = 409, description = "No storage but this one takes mirrors", body = ErrorBody),
        (status = 503, description = "`no_storage`: no other storage takes mirrors now", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn drain(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<DrainRequest>,
) -> Result<(StatusCode, Json<Drained>), ApiError> {
    if state.cfg.storage.get(&name).is_none() {
        return Err(ApiError::NotFound("storage"));
    }
    let limit = validate::limit("invalid_limit", req.limit, 100, moves::MAX_DRAIN)?;
    let drained = moves::drain(
        &state.cfg,
        &state.pool,
        &state.jobs,
        &name,
        req.to.as_deref(),
        req.owner.as_deref(),
        limit,
    )
    .await?
    .map_err(refused)?;
    Ok((StatusCode::ACCEPTED, Json(drained)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovesQuery {
    /// `pending`, `running`, `done`, `failed` or `cancelled`; all when omitted.
    pub state: Option<String>,
    /// 1 to 500, default 100; newest first.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MoveList {
    pub moves: Vec<Move>,
}

/// Moves between storages, newest first: those under way, and how the others ended.
#[utoipa::path(get, path = "/admin/moves", tag = "admin", operation_id = "listMoves",
    params(MovesQuery),
    responses((status = 200, body = MoveList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn moves(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<MovesQuery>,
) -> Result<Json<MoveList>, ApiError> {
    if let Some(s) = &q.state {
        if !MOVE_STATES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(
                "invalid_query",
                format!("state must be one of {}, not `{s}`", MOVE_STATES.join(", ")),
            ));
        }
    }
    let limit = validate::limit("invalid_query", q.limit, 100, 500)?;
    let moves = storages::moves(&state.pool, q.state.as_deref(), limit).await?;
    Ok(Json(MoveList { moves }))
}

fn refused(refused: Refused) -> ApiError {
    match refused {
        Refused::NoTarget(_) => ApiError::NoStorage(refused.to_string()),
        Refused::OnlySource(_) => ApiError::Conflict(refused.to_string()),
        _ => ApiError::BadRequest("invalid_storage", refused.to_string()),
    }
}
