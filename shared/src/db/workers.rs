//! The registry of worker processes: each refreshes its row every heartbeat, so
//! operators see which workers are alive and what each is running.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    /// Jobs recorded as `running` on this worker.
    pub jobs_in_flight: i64,
}

pub struct Registration<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub pid: u32,
    pub concurrency: usize,
}

/// Registers the worker or refreshes its heartbeat.
pub async fn beat(pool: &PgPool, w: &Registration<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO workers (name, host, pid, concurrency) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET last_heartbeat_at = now()",
    )
    .bind(w.name)
    .bind(w.host)
    .bind(w.pid as i32)
    .bind(w.concurrency as i32)
    .execute(pool)
    .await?;
    Ok(())
}

/// A worker that stops cleanly leaves; one that dies is pruned once stale.
pub async fn leave(pool: &PgPool, name: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM workers WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Workers whose last heartbeat is within `window`, newest first. Rows older than a
/// day are deleted on the way: a crashed worker must not linger in the registry.
pub async fn alive(pool: &PgPool, window: Duration) -> sqlx::Result<Vec<WorkerRow>> {
    sqlx::query("DELETE FROM workers WHERE last_heartbeat_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    sqlx::query_as::<_, WorkerRow>(concat!(
        "SELECT w.name, w.host, w.pid, w.concurrency, w.started_at, w.last_heartbeat_at,
                (SELECT count(*) FROM sync_jobs j WHERE j.worker = w.name AND ",
        crate::job_running!("j"),
        ") AS jobs_in_flight
         FROM workers w
         WHERE w.last_heartbeat_at > now() - make_interval(secs => $1)
         ORDER BY w.started_at DESC"
    ))
    .bind(window.as_secs_f64())
    .fetch_all(pool)
    .await
}
