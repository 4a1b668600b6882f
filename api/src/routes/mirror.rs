//! A mirror's sync: start one now, read its status and history, change its settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use stasis_shared::db::repos::{self, MirrorSettings, Repo};
use stasis_shared::db::storages;
use stasis_shared::db::{notifications, runs, users::User};
use stasis_shared::domain::{JobState, PublicStatus, SyncReason, SyncStatus};
use stasis_shared::jobs::Window;
use stasis_shared::progress::{self, SyncProgress};

use crate::auth::{can_manage, can_see, Authenticated, Caller};
use crate::dto::{
    ErrorBody, History, HistoryQuery, MirrorSettingsRequest, MirrorStatus, RepoResponse,
    SyncAccepted, SyncQuery,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::repos::visible_repo;
use crate::state::AppState;
use crate::validate;

/// A mirror the caller may manage (owner or admin).
pub async fn managed_mirror(
    state: &AppState,
    user: &User,
    owner: &str,
    name: &str,
) -> Result<Repo, ApiError> {
    let repo = visible_repo(state, Some(user), owner, name).await?;
    if !can_manage(user, &repo) {
        return Err(ApiError::Forbidden);
    }
    if !repo.is_mirror {
        return Err(ApiError::BadRequest(
            "not_a_mirror",
            "repository is not a mirror".into(),
        ));
    }
    Ok(repo)
}

/// "Sync now". An already queued or running sync is returned instead of a second one,
/// and within `mirror.min_manual_interval` of the last sync start the new one waits for
/// the window's end (`next_run_at`); an admin's `?force=true` starts it now.
/// `?lfs_retry=true` makes every Git LFS object the mirror lacks due for that sync.
#[utoipa::path(
    post, path = "/repos/{owner}/{repo}/sync", tag = "mirrors", operation_id = "syncMirror",
    params(("owner" = String, Path), ("repo" = String, Path), SyncQuery),
    responses(
        (status = 202, body = SyncAccepted),
        (status = 400, description = "Not a mirror", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not the owner, or `force` without an admin token", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn sync(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> Result<(StatusCode, Json<SyncAccepted>), ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    let force = q.force.unwrap_or(false);
    if force && !user.is_admin {
        return Err(ApiError::AdminOnly);
    }
    if q.lfs_retry.unwrap_or(false) {
        // due now: whichever sync of the mirror runs next tries them, this one or the
        // one already queued
        stasis_shared::db::lfs_missing::retry_now(&state.pool, repo.id).await?;
    }
    let accepted = request_sync(&state, repo.id, SyncReason::Manual, force).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Enqueues a sync (or finds the one pending or running) and answers with the mirror API's public status.
pub async fn request_sync(
    state: &AppState,
    repo_id: uuid::Uuid,
    reason: SyncReason,
    force: bool,
) -> Result<SyncAccepted, ApiError> {
    let window = if force {
        Window::Force
    } else {
        Window::Min(state.cfg.mirror.min_manual_interval)
    };
    let enqueued = state
        .jobs
        .request_within(repo_id, reason, window)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    let deferred = enqueued.run_at > chrono::Utc::now();
    let coalesced = match (enqueued.created, deferred) {
        (false, _) => Some("pending"),
        (true, true) => Some("deferred"),
        (true, false) => None,
    };
    if let Some(how) = coalesced {
        crate::refusals::coalesced(how);
    }
    let status = repos::find(&state.pool, repo_id)
        .await?
        .map_or(SyncStatus::Queued, |r| r.sync_status);
    let message = if enqueued.created && deferred {
        "Mirror sync scheduled after the minimum interval between syncs"
    } else if enqueued.waiting {
        "Mirror sync queued: it waits for room in the queue"
    } else if enqueued.created {
        "Mirror sync started"
    } else if enqueued.follow_up {
        "Mirror sync in progress: another sync will run after it"
    } else {
        "Mirror sync already queued or in progress"
    };
    Ok(SyncAccepted {
        message,
        status: PublicStatus::Syncing,
        sync_state: status,
        job_id: enqueued.job_id,
        next_run_at: enqueued.run_at,
        follow_up: enqueued.follow_up,
        waiting_for_queue: enqueued.waiting,
    })
}

/// A mirror's sync status: the last success and the last attempt, the next sync, the
/// job in flight (attempt n of m, next retry) and the size on disk.
#[utoipa::path(
    get, path = "/repos/{owner}/{repo}/mirror/status", tag = "mirrors", operation_id = "getMirrorStatus",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses((status = 200, body = MirrorStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<Json<MirrorStatus>, ApiError> {
    match repos::find_with_active_job(&state.pool, &owner, &name).await? {
        Some(found) if can_see(caller.as_ref(), &found.repo) => {
            let mut status = MirrorStatus::new(
                &found.repo,
                &found.job,
                found.last_attempt_at,
                found.lfs_missing_objects,
            );
            if let (Some(job_id), Some(JobState::Running)) = (found.job.id, found.job.state) {
                status.progress = sync_progress(&state, found.repo.id, job_id).await;
            }
            if found.job.state == Some(JobState::Pending) {
                let route = found.repo.route();
                let window = state.cfg.queue.liveness_window();
                if storages::live_workers(&state.pool, route, window).await? == 0 {
                    status.waiting_for_storage =
                        Some(format!("storage {route} has no live worker"));
                }
            }
            Ok(Json(status))
        }
        _ => Err(ApiError::NotFound("repository")),
    }
}

/// How long the status waits for the progress: a slow Redis costs the figures, not the
/// answer.
const PROGRESS_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The running job's progress as its worker published it; none when Redis does not
/// answer in time (the rest of the status is Postgres's and still right).
async fn sync_progress(
    state: &AppState,
    repo_id: uuid::Uuid,
    job_id: uuid::Uuid,
) -> Option<SyncProgress> {
    let namespace = &state.cfg.queue.namespace;
    let read = progress::read(&state.redis, namespace, repo_id, job_id);
    match tokio::time::timeout(PROGRESS_READ_TIMEOUT, read).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "sync progress unreadable");
            None
        }
        Err(_) => {
            tracing::debug!("sync progress read timed out");
            None
        }
    }
}

/// A mirror's sync history: its latest runs, newest first, each with its outcome, error
/// and figures; unchanged syncs in a row share one run that counts them (`checks`).
#[utoipa::path(
    get, path = "/repos/{owner}/{repo}/mirror/history", tag = "mirrors", operation_id = "listMirrorHistory",
    params(("owner" = String, Path), ("repo" = String, Path), HistoryQuery),
    responses((status = 200, body = History), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let limit = validate::limit("invalid_query", q.limit.map(i64::from), 20, 100)?;
    let repo = visible_repo(&state, caller.as_ref(), &owner, &name).await?;
    let runs = runs::for_repo(&state.pool, repo.id, limit).await?;
    let notifications = match &caller {
        Some(user) if can_manage(user, &repo) => {
            Some(notifications::for_repo(&state.pool, repo.id, limit).await?)
        }
        _ => None,
    };
    Ok(Json(History {
        runs,
        notifications,
    }))
}

/// Per-mirror settings: interval, scheduled syncs on or off, Git LFS on or off, upstream
/// URL, webhook secret, ref selection.
#[utoipa::path(
    patch, path = "/repos/{owner}/{repo}/mirror", tag = "mirrors", operation_id = "updateMirrorSettings",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body = MirrorSettingsRequest,
    responses(
        (status = 200, body = RepoResponse),
        (status = 400, description = "Not a mirror, bad interval or URL", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<MirrorSettingsRequest>,
) -> Result<Json<RepoResponse>, ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    let (min, max) = (
        state.cfg.mirror.min_sync_interval,
        state.cfg.mirror.max_sync_interval,
    );
    let sync_interval_secs = match req.sync_interval {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => Some(Some(validate::interval(&text, min, max)?.as_secs() as i32)),
    };
    // A new upstream takes the credentials it carries or those sent with it, and
    // otherwise none: stored ones never go to another host unasked.
    let (upstream, credentials) = match (req.mirror_url, req.credentials) {
        (Some(url), fields) => {
            let (url, sealed) = validate::upstream(&state, &url, fields.flatten().as_ref()).await?;
            (Some(url), Some(sealed))
        }
        (None, Some(Some(fields))) => {
            let url = repo.mirror_url.as_deref().unwrap_or_default();
            (
                None,
                Some(Some(validate::credentials(&state, url, &fields)?)),
            )
        }
        (None, Some(None)) => (None, Some(None)),
        (None, None) => (None, None),
    };
    let webhook_secret = match req.webhook_secret {
        None => None,
        Some(None) => Some(None),
        Some(Some(secret)) => Some(Some(validate::webhook_secret(&state, &secret)?)),
    };
    let include_refs = req
        .include_refs
        .map(|p| validate::ref_patterns("include_refs", p))
        .transpose()?;
    let exclude_refs = req
        .exclude_refs
        .map(|p| validate::ref_patterns("exclude_refs", p))
        .transpose()?;
    let settings = MirrorSettings {
        sync_interval_secs,
        enabled: req.enabled,
        lfs: req.lfs,
        upstream,
        credentials,
        webhook_secret,
        include_refs,
        exclude_refs,
    };
    repos::update_mirror(
        &state.pool,
        repo.id,
        &settings,
        state.cfg.mirror.sync_interval,
    )
    .await?;
    let repo = repos::find(&state.pool, repo.id)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    Ok(Json(RepoResponse::from(&repo)))
}
