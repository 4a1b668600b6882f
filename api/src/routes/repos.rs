//! Repositories: import, read, list, rename, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use stasis_shared::db::repos::{self, Repo, RepoFilter, RepoSort, Viewer};
use stasis_shared::db::users;
use stasis_shared::domain::{PublicStatus, SyncReason, SyncStatus};
use stasis_shared::placement::{self, Unplaced};
use stasis_shared::removal::{remove_mirror, Removal};
use stasis_shared::rename::{rename_mirror, Rename};

use crate::auth::{can_manage, can_see, Authenticated, Caller};
use crate::dto::{
    paging, ErrorBody, ImportRequest, RenameRequest, RepoPage, RepoQuery, RepoResponse,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::validate;

/// The repository if the caller may see it; 404 otherwise, so that private
/// repositories do not leak their existence.
pub async fn visible_repo(
    state: &AppState,
    caller: Option<&users::User>,
    owner: &str,
    name: &str,
) -> Result<Repo, ApiError> {
    match repos::find_by_name(&state.pool, owner, name).await? {
        Some(repo) if can_see(caller, &repo) => Ok(repo),
        _ => Err(ApiError::NotFound("repository")),
    }
}

/// Import a repository; a mirror gets an import job at once.
#[utoipa::path(
    post, path = "/repos/import", tag = "repos", operation_id = "importRepository",
    request_body = ImportRequest,
    responses(
        (status = 202, description = "Imported; the import sync is queued", body = RepoResponse),
        (status = 400, description = "Bad name, description, interval or URL (incl. blocked addresses)", body = ErrorBody),
        (status = 401, description = "No or bad token", body = ErrorBody),
        (status = 403, description = "`quota_exceeded`: the caller owns `mirror.max_per_user` repositories", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn import(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<(StatusCode, Json<RepoResponse>), ApiError> {
    validate::name(&req.name)?;
    validate::description(req.description.as_deref().unwrap_or(""))?;
    // Checked before the insert, not atomically with it: concurrent imports may pass it
    // together by a few, which the import rate limit bounds.
    let max = state.cfg.mirror.max_per_user;
    let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM repositories WHERE owner_id = $1")
        .bind(user.id)
        .fetch_one(&state.pool)
        .await?;
    if owned >= i64::from(max) {
        return Err(ApiError::QuotaExceeded(max));
    }
    let (min, max) = (
        state.cfg.mirror.min_sync_interval,
        state.cfg.mirror.max_sync_interval,
    );
    let interval = req
        .sync_interval
        .as_deref()
        .map(|i| validate::interval(i, min, max))
        .transpose()?;
    let include_refs =
        validate::ref_patterns("include_refs", req.include_refs.unwrap_or_default())?;
    let exclude_refs =
        validate::ref_patterns("exclude_refs", req.exclude_refs.unwrap_or_default())?;
    let (clone_url, credentials) =
        validate::upstream(&state, &req.clone_url, req.credentials.as_ref()).await?;
    if req.storage.is_some() && !user.is_admin {
        return Err(ApiError::AdminOnly);
    }
    let storage = match placement::place(&state.cfg, &state.pool, req.storage.as_deref()).await? {
        Ok(storage) => storage,
        Err(e @ (Unplaced::Unknown(_) | Unplaced::ReadOnly(_))) => {
            return Err(ApiError::BadRequest("invalid_storage", e.to_string()))
        }
        Err(e @ Unplaced::NoneAccepting(_)) => return Err(ApiError::NoStorage(e.to_string())),
    };
    // The repository and its import job are recorded together or not at all: a
    // repository without its job would never sync, and its retried import would find the
    // name taken. Once both are recorded the import runs, whatever Redis's state.
    let mut tx = state.pool.begin().await?;
    let created = repos::create(
        &mut *tx,
        &repos::NewRepo {
            owner_id: user.id,
            name: &req.name,
            description: req.description.as_deref().unwrap_or(""),
            private: req.private.unwrap_or(false),
            is_mirror: req.mirror,
            clone_url: &clone_url,
            credentials,
            sync_interval_secs: interval.map(|i| i.as_secs() as i32),
            include_refs: &include_refs,
            exclude_refs: &exclude_refs,
            storage: &storage,
        },
    )
    .await;
    let repo_id = match created {
        Ok(id) => id,
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(ApiError::Conflict(format!(
                "repository {}/{} already exists",
                user.username, req.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let job = state
        .jobs
        .open_in(&mut tx, repo_id, SyncReason::Import)
        .await?;
    tx.commit().await?;
    if let Some(job) = job {
        state.jobs.admit_promptly(vec![job]).await;
    }
    let repo = repos::find(&state.pool, repo_id)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    Ok((StatusCode::ACCEPTED, Json(RepoResponse::from(&repo))))
}

/// One repository, with its mirror fields when it is a mirror.
#[utoipa::path(
    get, path = "/repos/{owner}/{repo}", tag = "repos", operation_id = "getRepository",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 200, body = RepoResponse),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such repository, or a private one of someone else", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<Json<RepoResponse>, ApiError> {
    let repo = visible_repo(&state, caller.as_ref(), &owner, &name).await?;
    Ok(Json(RepoResponse::from(&repo)))
}

async fn list_page(
    state: &AppState,
    caller: Option<&users::User>,
    owner: Option<String>,
    q: RepoQuery,
) -> Result<Json<RepoPage>, ApiError> {
    let (page, per_page) = paging(q.page, q.per_page)?;
    let sort = match q.sort.as_deref() {
        None => RepoSort::default(),
        Some(s) => RepoSort::parse(s).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid_query",
                format!(
                    "sort must be one of {}; not `{s}`",
                    RepoSort::NAMES.join(", ")
                ),
            )
        })?,
    };
    let status = match q.sync_status.as_deref() {
        None => Vec::new(),
        Some(s) => statuses(s)?,
    };
    let viewer = match caller {
        Some(u) if u.is_admin => Viewer::All,
        Some(u) => Viewer::User(u.id),
        None => Viewer::Anonymous,
    };
    let filter = RepoFilter {
        mirror: q.mirror,
        status,
        owner,
        host: validate::filter_text("host", q.host, 253)?,
        search: validate::filter_text("q", q.q, 100)?,
        storage: validate::filter_text("storage", q.storage, 32)?,
        viewer,
    };
    let limit = i64::from(per_page);
    let (found, total) = repos::list(
        &state.pool,
        &filter,
        sort,
        limit,
        i64::from(page - 1) * limit,
    )
    .await?;
    Ok(Json(RepoPage {
        repos: found.iter().map(RepoResponse::from).collect(),
        page,
        per_page,
        total,
    }))
}

/// The states a `sync_status` filter matches: a public status value (`failed` is also
/// `hard_failed`, `syncing` also `queued`) or one exact state.
fn statuses(s: &str) -> Result<Vec<SyncStatus>, ApiError> {
    if let Ok(public) = s.parse::<PublicStatus>() {
        return Ok(public.covers());
    }
    s.parse::<SyncStatus>().map(|one| vec![one]).map_err(|_| {
        ApiError::BadRequest(
            "invalid_query",
            format!(
                "sync_status must be idle, syncing, success or failed (or a sync_state: \
                 queued, hard_failed); not `{s}`"
            ),
        )
    })
}

/// Every repository the caller can see, by owner and name.
#[utoipa::path(
    get, path = "/repos", tag = "repos", operation_id = "listRepositories", params(RepoQuery),
    responses((status = 200, body = RepoPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<RepoQuery>,
) -> Result<Json<RepoPage>, ApiError> {
    list_page(&state, caller.as_ref(), None, q).await
}

/// One user's repositories that the caller can see.
#[utoipa::path(
    get, path = "/users/{owner}/repos", tag = "repos", operation_id = "listUserRepositories",
    params(("owner" = String, Path), RepoQuery),
    responses(
        (status = 200, body = RepoPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn list_for_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(owner): ApiPath<String>,
    ApiQuery(q): ApiQuery<RepoQuery>,
) -> Result<Json<RepoPage>, ApiError> {
    if !users::exists(&state.pool, &owner).await? {
        return Err(ApiError::NotFound("user"));
    }
    list_page(&state, caller.as_ref(), Some(owner), q).await
}

/// Delete a repository: its row, its bare mirror on disk, its jobs and their queued
/// deliveries. Refused (409) while a sync of it runs.
#[utoipa::path(
    delete, path = "/repos/{owner}/{repo}", tag = "repos", operation_id = "deleteRepository",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A sync is running; retry when it ends", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let repo = visible_repo(&state, Some(&user), &owner, &name).await?;
    if !can_manage(&user, &repo) {
        return Err(ApiError::Forbidden);
    }
    let removal = remove_mirror(
        &state.cfg,
        &state.pool,
        state.redis.clone(),
        &state.jobs,
        &repo,
    )
    .await?;
    if removal == Removal::SyncRunning {
        return Err(ApiError::Conflict(
            "a sync of this repository is running; retry when it ends".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Rename a repository: its bare mirror moves on disk to the new name's directory, and
/// later syncs use it. Refused (409) while a sync of it runs or when the owner has a
/// repository of that name.
#[utoipa::path(
    patch, path = "/repos/{owner}/{repo}", tag = "repos", operation_id = "renameRepository",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "Renamed", body = RepoResponse),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Name taken, or a sync is running (retry when it ends)", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rename(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> Result<Json<RepoResponse>, ApiError> {
    let repo = visible_repo(&state, Some(&user), &owner, &name).await?;
    if !can_manage(&user, &repo) {
        return Err(ApiError::Forbidden);
    }
    validate::name(&req.name)?;
    let renamed = rename_mirror(
        &state.cfg,
        &state.pool,
        state.redis.clone(),
        &repo,
        &req.name,
    )
    .await?;
    match renamed {
        Rename::Renamed => {}
        Rename::NameTaken => {
            return Err(ApiError::Conflict(format!(
                "repository {}/{} already exists",
                repo.owner, req.name
            )))
        }
        Rename::PathOccupied => {
            return Err(ApiError::Conflict(format!(
                "mirror storage already holds a directory for {}/{}",
                repo.owner, req.name
            )))
        }
        Rename::SyncRunning => {
            return Err(ApiError::Conflict(
                "a sync of this repository is running; retry when it ends".into(),
            ))
        }
        Rename::Moving => {
            return Err(ApiError::Conflict(
                "the mirror is moving to another storage; retry once it has moved".into(),
            ))
        }
    }
    let repo = repos::find(&state.pool, repo.id)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    Ok(Json(RepoResponse::from(&repo)))
}
