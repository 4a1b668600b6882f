use std::sync::Arc;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::jobs::Jobs;
use stasis_shared::secrets::Cipher;
use stasis_shared::Config;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub jobs: Jobs,
    /// Which backend fails right now, kept by [`crate::backends::watch`] while serving.
    pub health: Arc<crate::backends::BackendHealth>,
    /// Seals upstream credentials; `None` without `secrets.key`.
    pub cipher: Option<Cipher>,
}
