//! What the fleet did lately (attempts per interval, for the operator's charts) and what
//! Redis gave up on (dead deliveries).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stasis_shared::db::jobs;
use stasis_shared::db::runs::{self, ActivityBucket};
use stasis_shared::domain::JobState;
use stasis_shared::queue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::dto::ErrorBody;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::validate;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// `hour` (60 one-minute intervals, the default) or `day` (48 half-hour intervals).
    #[param(pattern = "^(hour|day)$")]
    pub window: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Activity {
    /// `hour` or `day`.
    pub window: &'static str,
    pub bucket_seconds: i64,
    /// Oldest first; the last one holds now and is still filling.
    pub buckets: Vec<ActivityBucket>,
}

/// Attempts finished per interval over the last hour or day, by outcome: throughput and
/// failures for the operator's charts.
#[utoipa::path(get, path = "/admin/activity", tag = "admin", operation_id = "getActivity", params(ActivityQuery),
    responses((status = 200, body = Activity), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn activity(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<ActivityQuery>,
) -> Result<Json<Activity>, ApiError> {
    let (window, bucket_seconds, buckets) = match q.window.as_deref() {
        None | Some("hour") => ("hour", 60, 60),
        Some("day") => ("day", 1800, 48),
        Some(other) => {
            return Err(ApiError::BadRequest(
                "invalid_query",
                format!("window must be hour or day, not `{other}`"),
            ))
        }
    };
    Ok(Json(Activity {
        window,
        bucket_seconds,
        buckets: runs::activity(&state.pool, bucket_seconds, buckets).await?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Per lane, 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadEntry {
    #[serde(flatten)]
    pub delivery: queue::DeadDelivery,
    /// The job's state in Postgres, the source of truth: a dead delivery of a job that is
    /// `done` needs nothing; one of a `failed` or `dead` job can be retried.
    pub job_state: Option<JobState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadDeliveries {
    pub deliveries: Vec<DeadEntry>,
}

/// Deliveries the queue gave up on (each lane's dead set in Redis), with their job's
/// state in Postgres.
#[utoipa::path(get, path = "/admin/queue/dead", tag = "admin", operation_id = "listDeadDeliveries", params(DeadQuery),
    responses((status = 200, body = DeadDeliveries), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dead_deliveries(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<DeadQuery>,
) -> Result<Json<DeadDeliveries>, ApiError> {
    let limit = validate::limit("invalid_query", q.limit.map(i64::from), 100, 500)? as usize;
    let found = queue::dead_deliveries(&state.redis, state.jobs.lanes(), limit)
        .await
        .map_err(stasis_shared::Error::from)?;
    let ids: Vec<Uuid> = found.iter().filter_map(|d| d.job_id).collect();
    let states = jobs::states(&state.pool, &ids).await?;
    let deliveries = found
        .into_iter()
        .map(|delivery| DeadEntry {
            job_state: delivery.job_id.and_then(|id| states.get(&id).copied()),
            delivery,
        })
        .collect();
    Ok(Json(DeadDeliveries { deliveries }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadPurged {
    /// Dead deliveries removed, in both lanes.
    pub removed: u64,
}

/// Empties the dead sets. A dead delivery holds nothing Postgres does not: its job is
/// retried from Postgres (`POST /admin/jobs/{id}/retry`), which pushes a new delivery.
/// List them first to see which jobs need that.
#[utoipa::path(delete, path = "/admin/queue/dead", tag = "admin", operation_id = "purgeDeadDeliveries",
    responses((status = 200, body = DeadPurged), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn purge_dead_deliveries(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<DeadPurged>, ApiError> {
    let removed = queue::purge_dead(&state.redis, &state.cfg.queue, state.jobs.lanes())
        .await
        .map_err(stasis_shared::Error::from)?;
    tracing::info!(removed, "dead deliveries purged by an operator");
    Ok(Json(DeadPurged { removed }))
}
