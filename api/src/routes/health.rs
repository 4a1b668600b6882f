use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;
use stasis_shared::queue;

/// How long `/readyz` waits for each backend: its answer comes within a second.
const CHECK_WITHIN: std::time::Duration = std::time::Duration::from_millis(800);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "checkLiveness", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when Postgres and Redis both answer; otherwise 503 naming what is down.
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "checkReadiness", responses(
    (status = 200, description = "`{\"status\":\"ready\"}`"),
    (status = 503, description = "`{\"error\", \"code\", \"down\": [...]}`"),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    // both at once, each bounded: a backend that hangs must not hold the answer
    let db = async {
        let ping = sqlx::query("SELECT 1").execute(&state.pool);
        matches!(tokio::time::timeout(CHECK_WITHIN, ping).await, Ok(Ok(_)))
    };
    let redis = async {
        let ping = queue::once_more(|| {
            let mut conn = state.redis.clone();
            async move { redis::cmd("PING").query_async::<String>(&mut conn).await }
        });
        matches!(tokio::time::timeout(CHECK_WITHIN, ping).await, Ok(Ok(_)))
    };
    let (db, redis) = tokio::join!(db, redis);
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
