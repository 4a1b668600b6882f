//! Operator endpoints (admin token): jobs, the queue, the scheduler, run-time settings.
//! Job state and history come from Postgres; retry and discard act on Postgres and on
//! the deliveries in Redis.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_shared::db::jobs::{self, Job, JobFilter};
use stasis_shared::db::runs::{self, Run};
use stasis_shared::db::settings;
use stasis_shared::domain::lifecycle::operator::Refused;
use stasis_shared::domain::names::{split_repo, NotFullName};
use stasis_shared::domain::JobState;
use stasis_shared::overview::{self, QueueOverview, SyncInterval};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::dto::paging;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::validate;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// pending, running, done, failed or dead.
    #[param(pattern = "^(pending|running|done|failed|dead)$")]
    pub state: Option<String>,
    /// `owner/name`
    #[param(pattern = "^[^/]+/[^/]+$")]
    pub repo: Option<String>,
    /// From 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, 30 by default.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<Job>,
    pub page: u32,
    pub per_page: u32,
    /// Jobs matching the filter, counted up to 10,000 (or to the end of this page):
    /// past that, at least this many.
    pub total: i64,
    /// `false` when counting stopped at `total`.
    pub total_exact: bool,
}

/// Jobs, newest first, filtered by state and repository.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", operation_id = "listJobs", params(JobsQuery),
    responses((status = 200, body = JobsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobsPage>, ApiError> {
    let filter = JobFilter {
        state: q
            .state
            .as_deref()
            .map(|s| {
                s.parse::<JobState>().map_err(|_| {
                    ApiError::BadRequest(
                        "invalid_state",
                        format!(
                            "state must be one of pending, running, done, failed, dead; not `{s}`"
                        ),
                    )
                })
            })
            .transpose()?,
        repo: q
            .repo
            .as_deref()
            .map(split_repo)
            .transpose()
            .map_err(invalid_repo)?,
    };
    let (page, per_page) = paging(q.page, q.per_page)?;
    let (jobs, total) = jobs::list(
        &state.pool,
        &filter,
        i64::from(per_page),
        i64::from(page - 1) * i64::from(per_page),
    )
    .await?;
    Ok(Json(JobsPage {
        jobs,
        page,
        per_page,
        total: total.count,
        total_exact: total.exact,
    }))
}

/// A `repo` the admin's endpoints were given that is not `owner/name`.
pub fn invalid_repo(NotFullName(full): NotFullName) -> ApiError {
    ApiError::BadRequest(
        "invalid_repo",
        format!("repo must be `owner/name`, not `{full}`"),
    )
}

/// A job as the listing shows it (`attempts` the count of attempts made, as there) and
/// its attempts themselves under `runs`: one name, one meaning.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    /// Every attempt, first to last.
    pub runs: Vec<Run>,
}

/// One job with every attempt.
#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "admin", operation_id = "getJob", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show_job(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = jobs::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    let runs = runs::for_job(&state.pool, id).await?;
    Ok(Json(JobDetail { job, runs }))
}

fn refused(r: Refused, action: &str) -> ApiError {
    match r {
        Refused::NotFound => ApiError::NotFound("job"),
        Refused::State(state) => ApiError::Conflict(format!("a {state} job cannot be {action}")),
        Refused::Busy(other) => ApiError::Conflict(format!(
            "the repository already has an active job {other}; it must finish first"
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobAction {
    pub message: &'static str,
    pub job: Job,
    /// Deliveries removed from Redis (discard only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_removed: Option<u64>,
}

/// A failed or dead job back to pending, with a fresh allowance of attempts.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin", operation_id = "retryJob", params(("id" = Uuid, Path)),
    responses((status = 202, body = JobAction), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_job(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<JobAction>), ApiError> {
    state
        .jobs
        .retry(id)
        .await?
        .map_err(|r| refused(r, "retried"))?;
    let job = jobs::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobAction {
            message: "Job queued for retry",
            job,
            deliveries_removed: None,
        }),
    ))
}

/// A pending or failed job to dead; its queued deliveries leave Redis.
#[utoipa::path(post, path = "/admin/jobs/{id}/discard", tag = "admin", operation_id = "discardJob", params(("id" = Uuid, Path)),
    responses((status = 200, body = JobAction), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn discard_job(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobAction>, ApiError> {
    let (_, removed) = state
        .jobs
        .discard(id)
        .await?
        .map_err(|r| refused(r, "discarded"))?;
    let job = jobs::find(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    Ok(Json(JobAction {
        message: "Job discarded",
        job,
        deliveries_removed: Some(removed),
    }))
}

/// Depth per state, Redis depth, oldest pending age, throughput, workers, scheduler.
#[utoipa::path(get, path = "/admin/queue", tag = "admin", operation_id = "getQueueOverview",
    responses((status = 200, body = AdminQueue), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn queue(State(state): State<AppState>, _: Admin) -> Result<Json<AdminQueue>, ApiError> {
    Ok(Json(AdminQueue {
        overview: overview::queue_overview(&state.cfg, &state.pool, &state.redis).await?,
        api_refusals: crate::refusals::now(),
    }))
}

/// The queue overview, and what this API process refused or held back since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminQueue {
    #[serde(flatten)]
    pub overview: QueueOverview,
    pub api_refusals: crate::refusals::ApiRefusals,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    pub paused: bool,
}

/// Pause scheduled syncs.
#[utoipa::path(post, path = "/admin/scheduler/pause", tag = "admin", operation_id = "pauseScheduler",
    responses((status = 200, body = Paused), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause_scheduler(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Paused>, ApiError> {
    settings::set_scheduler_paused(&state.pool, true).await?;
    Ok(Json(Paused { paused: true }))
}

/// Resume scheduled syncs.
#[utoipa::path(post, path = "/admin/scheduler/resume", tag = "admin", operation_id = "resumeScheduler",
    responses((status = 200, body = Paused), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume_scheduler(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Paused>, ApiError> {
    settings::set_scheduler_paused(&state.pool, false).await?;
    Ok(Json(Paused { paused: false }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfigUpdate {
    /// `30m`, `2h`…, from `mirror.min_sync_interval` to `mirror.max_sync_interval`;
    /// `null` returns to `mirror.sync_interval` from the config.
    #[schema(max_length = 64)]
    pub sync_interval: Option<String>,
}

/// The default sync interval and where it comes from.
#[utoipa::path(get, path = "/admin/mirror/config", tag = "admin", operation_id = "getMirrorConfig",
    responses((status = 200, body = SyncInterval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn mirror_config(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<SyncInterval>, ApiError> {
    Ok(Json(SyncInterval::current(&state.cfg, &state.pool).await?))
}

/// Set the default sync interval at run time, for every mirror without its own; `null`
/// goes back to `mirror.sync_interval`.
#[utoipa::path(put, path = "/admin/mirror/config", tag = "admin", operation_id = "setMirrorConfig", request_body = MirrorConfigUpdate,
    responses((status = 200, body = SyncInterval), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_mirror_config(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(update): ApiJson<MirrorConfigUpdate>,
) -> Result<Json<SyncInterval>, ApiError> {
    let interval = update
        .sync_interval
        .as_deref()
        .map(|text| {
            let mirror = &state.cfg.mirror;
            validate::interval(text, mirror.min_sync_interval, mirror.max_sync_interval)
        })
        .transpose()?;
    settings::set_sync_interval(&state.pool, interval).await?;
    Ok(Json(SyncInterval::current(&state.cfg, &state.pool).await?))
}
