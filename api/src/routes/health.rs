use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when Postgres and Redis both answer; otherwise 503 naming what is down.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "`{\"status\":\"ready\"}`"),
    (status = 503, description = "`{\"error\", \"code\", \"down\": [...]}`"),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let redis = redis::cmd("PING")
        .query_async::<String>(&mut state.redis.clone())
        .await
        .is_ok();
    let down: Vec<&str> = [("postgres", db), ("redis", redis)]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
    if down.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": format!("not ready: {} unreachable", down.join(", ")),
                "code": "unavailable",
                "down": down,
            })),
        )
    }
}
