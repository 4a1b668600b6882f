//! `notifications`: the outbox of failure and recovery events, one row per receiver.
//! The worker writes them in the statement that records a sync's end (`record::finish`),
//! so an event exists exactly when the status change does.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    pub event: String,
    pub url: String,
    pub body: String,
    pub attempts: i32,
}

/// Takes up to `limit` due deliveries, leasing them for `lease` so a sender that dies
/// mid-delivery only delays them.
pub async fn take_due(
    pool: &PgPool,
    limit: i64,
    lease: std::time::Duration,
) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as(
        "UPDATE notifications SET attempts = attempts + 1,
             next_attempt_at = now() + make_interval(secs => $2)
         WHERE id IN (SELECT id FROM notifications
                      WHERE delivered_at IS NULL AND given_up_at IS NULL
                        AND next_attempt_at <= now()
                      ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, event, url, payload::text AS body, attempts",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

pub async fn delivered(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE notifications SET delivered_at = now(), last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A failed attempt: tried again after `retry_in`, or given up for good.
pub async fn failed(
    pool: &PgPool,
    id: i64,
    error: &str,
    retry_in: Option<std::time::Duration>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE notifications SET last_error = $2,
             next_attempt_at = CASE WHEN $3::float8 IS NULL THEN next_attempt_at
                                    ELSE now() + make_interval(secs => $3) END,
             given_up_at = CASE WHEN $3::float8 IS NULL THEN now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(retry_in.map(|d| d.as_secs_f64()))
    .execute(pool)
    .await?;
    Ok(())
}

/// A notification as the mirror's history shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Sent {
    pub event: String,
    /// The receiver, credentials masked.
    pub url: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub given_up_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The repository's latest `limit` notifications, newest first.
pub async fn for_repo(pool: &PgPool, repo_id: Uuid, limit: i64) -> sqlx::Result<Vec<Sent>> {
    let mut sent: Vec<Sent> = sqlx::query_as(
        "SELECT event, url, attempts, created_at, delivered_at, given_up_at, last_error
         FROM notifications WHERE repo_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(repo_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    for s in &mut sent {
        s.url = crate::git::url::redact_url(&s.url);
    }
    Ok(sent)
}
