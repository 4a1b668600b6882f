//! `stasis-api`: the HTTP interface.

pub mod access_log;
pub mod auth;
pub mod backends;
pub mod credential;
pub mod dto;
pub mod error;
pub mod extract;
pub mod guard;
pub mod http_metrics;
pub mod openapi;
mod recent;
pub mod refusals;
pub mod routes;
pub mod server;
pub mod state;
pub mod ui;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::jobs::Jobs;
use stasis_shared::Config;
use tokio::net::TcpListener;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
pub use crate::state::AppState;

impl AppState {
    /// `cipher`: from [`stasis_shared::secrets::load`], which refuses to start without a
    /// key when credentials are stored.
    pub fn new(
        cfg: Config,
        pool: PgPool,
        redis: ConnectionManager,
        cipher: Option<stasis_shared::secrets::Cipher>,
    ) -> Self {
        let jobs = Jobs::new(pool.clone(), redis.clone(), &cfg);
        Self {
            cfg: Arc::new(cfg),
            pool,
            redis,
            jobs,
            health: Arc::default(),
            cipher,
        }
    }
}

/// Every route, and the OpenAPI document generated from the same declarations, so the
/// two cannot drift apart.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (probes, guarded, doc) = route_sets();
    (probes.merge(guarded), doc)
}

/// The health probes apart from the rest: they stay outside the guard.
fn route_sets() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{activity, admin, fleet, health, hooks, mirror, repos, ssh, storages, user};
    let v1 = OpenApiRouter::new()
        .routes(routes!(user::current))
        .routes(routes!(user::set_notify))
        .routes(routes!(repos::import))
        .routes(routes!(repos::list))
        .routes(routes!(repos::list_for_user))
        .routes(routes!(repos::get, repos::rename, repos::delete))
        .routes(routes!(mirror::sync))
        .routes(routes!(mirror::update))
        .routes(routes!(mirror::status))
        .routes(routes!(mirror::history))
        .routes(routes!(
            ssh::get_deploy_key,
            ssh::rotate_deploy_key,
            ssh::upload_deploy_key,
            ssh::delete_deploy_key
        ))
        .routes(routes!(ssh::detect_host_keys))
        .routes(routes!(ssh::confirm_host_keys, ssh::get_host_keys))
        .routes(routes!(hooks::receive))
        .routes(routes!(admin::list_jobs))
        .routes(routes!(admin::show_job))
        .routes(routes!(admin::retry_job))
        .routes(routes!(admin::discard_job))
        .routes(routes!(admin::queue))
        .routes(routes!(
            activity::dead_deliveries,
            activity::purge_dead_deliveries
        ))
        .routes(routes!(activity::activity))
        .routes(routes!(fleet::sync_many))
        .routes(routes!(storages::list))
        .routes(routes!(storages::move_mirror))
        .routes(routes!(storages::drain))
        .routes(routes!(storages::moves))
        .routes(routes!(admin::pause_scheduler))
        .routes(routes!(admin::resume_scheduler))
        .routes(routes!(admin::mirror_config, admin::set_mirror_config));
    let (guarded, mut doc) = OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", v1)
        .split_for_parts();
    openapi::guarded_responses(&mut doc);
    let (probes, probes_doc) = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .split_for_parts();
    doc.merge(probes_doc);
    (probes, guarded, doc)
}

pub fn router(state: AppState) -> Router {
    let (probes, guarded, doc) = route_sets();
    let guard = guard::Guard::new(&state.cfg.api, &state.cfg.ratelimit, state.pool.clone());
    let body_limit = usize::try_from(state.cfg.api.max_body_size.as_u64()).unwrap_or(usize::MAX);
    let guarded = guarded
        .merge(openapi::serve(doc))
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        // outside the guard, whose token lookup is a statement too: a frozen Postgres
        // must not hold a request there past `api.unavailable_after`
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            backends::answer_within,
        ));
    let app = probes
        .merge(guarded)
        .layer(axum::middleware::from_fn(http_metrics::tag_route))
        .layer(TraceLayer::new_for_http().on_failure(log_failure))
        .with_state(state);
    // the access log wraps the router whole: a layer on its routes misses what the
    // router answers itself (405 for a method a route does not allow)
    Router::new()
        .fallback_service(app)
        .layer(axum::middleware::from_fn(access_log::record))
}

/// A 5xx answer in the log at the level it deserves: a 500 is a fault someone must
/// look at (its cause is logged where it was raised); a 502, 503 or 504 is the API
/// refusing while a backend is away or the load too high, expected, told to the client
/// with a retry hint and counted in the metrics.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let ms = latency.as_millis() as u64;
    match class {
        ServerErrorsFailureClass::StatusCode(status) if matches!(status.as_u16(), 502..=504) => {
            tracing::warn!(
                status = status.as_u16(),
                ms,
                "request refused: server unavailable"
            )
        }
        ServerErrorsFailureClass::StatusCode(status) => {
            tracing::error!(status = status.as_u16(), ms, "request failed")
        }
        ServerErrorsFailureClass::Error(error) => {
            tracing::error!(%error, ms, "request failed")
        }
    }
}

/// Serves until `shutdown` resolves; in-flight requests are completed first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.cfg.api.header_read_timeout;
    let keeper = tokio::spawn(backends::watch(
        state.health.clone(),
        state.redis.clone(),
        state.cfg.database.url.clone(),
    ));
    let served = server::run(listener, router(state), header_timeout, shutdown).await;
    keeper.abort();
    served
}
