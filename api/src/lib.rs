//! `stasis-api`: the HTTP interface.

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod http_metrics;
pub mod routes;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::queue::{self, Enqueuer};
use stasis_shared::Config;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
pub use crate::state::AppState;

impl AppState {
    pub fn new(cfg: Config, pool: PgPool, redis: ConnectionManager) -> Self {
        let enqueuer = Enqueuer::new(
            pool.clone(),
            queue::storage(redis.clone(), &cfg.queue, 1),
            cfg.sync.max_attempts,
        );
        Self {
            cfg: Arc::new(cfg),
            pool,
            redis,
            enqueuer,
        }
    }
}

pub fn router(state: AppState) -> Router {
    use routes::{admin, health, repos};
    let api = Router::new()
        .route("/repos/import", post(repos::import))
        .route("/repos/{owner}/{repo}", get(repos::get))
        .route("/repos/{owner}/{repo}/sync", post(repos::sync))
        .route(
            "/repos/{owner}/{repo}/mirror/status",
            get(repos::mirror_status),
        )
        .route(
            "/repos/{owner}/{repo}/mirror/history",
            get(repos::mirror_history),
        )
        .route("/admin/jobs", get(admin::list_jobs))
        .route("/admin/jobs/{id}", get(admin::show_job))
        .route("/admin/jobs/{id}/retry", post(admin::retry_job))
        .route("/admin/jobs/{id}/discard", post(admin::discard_job))
        .route("/admin/queue", get(admin::queue))
        .route("/admin/scheduler/pause", post(admin::pause_scheduler))
        .route("/admin/scheduler/resume", post(admin::resume_scheduler))
        .route(
            "/admin/mirror/config",
            get(admin::mirror_config).put(admin::set_mirror_config),
        );
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn(http_metrics::record))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves; in-flight requests are completed first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
