use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::SyncStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Repo {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub owner: String,
    pub name: String,
    pub description: String,
    pub private: bool,
    pub is_mirror: bool,
    pub mirror_url: Option<String>,
    pub mirror_enabled: bool,
    pub sync_interval_secs: Option<i32>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub sync_status: String,
    pub sync_error: Option<String>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    pub sync_fence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Repo {
    pub fn status(&self) -> SyncStatus {
        self.sync_status.parse().unwrap_or(SyncStatus::Idle)
    }
}

const SELECT: &str = "SELECT r.id, r.owner_id, u.username AS owner, r.name, r.description,
    r.private, r.is_mirror, r.mirror_url, r.mirror_enabled, r.sync_interval_secs,
    r.last_synced_at, r.sync_status, r.sync_error, r.next_sync_at, r.last_duration_ms,
    r.sync_fence, r.created_at, r.updated_at
    FROM repositories r JOIN users u ON u.id = r.owner_id";

pub async fn find(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Repo>> {
    sqlx::query_as::<_, Repo>(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn find_by_name(pool: &PgPool, owner: &str, name: &str) -> sqlx::Result<Option<Repo>> {
    sqlx::query_as::<_, Repo>(&format!("{SELECT} WHERE u.username = $1 AND r.name = $2"))
        .bind(owner)
        .bind(name)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone)]
pub struct NewRepo<'a> {
    pub owner_id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub private: bool,
    pub is_mirror: bool,
    pub clone_url: &'a str,
}

/// Inserts the repository; a taken name surfaces as a unique violation.
pub async fn create(pool: &PgPool, new: &NewRepo<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO repositories (id, owner_id, name, description, private, is_mirror, mirror_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(new.owner_id)
    .bind(new.name)
    .bind(new.description)
    .bind(new.private)
    .bind(new.is_mirror)
    .bind(new.clone_url)
    .fetch_one(pool)
    .await
}

/// What a listing of repositories filters by; `None`/`false` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RepoFilter {
    pub mirrors_only: bool,
    pub status: Option<SyncStatus>,
    pub owner: Option<String>,
}

/// One page of repositories ordered by owner and name, and how many match in all.
pub async fn list(
    pool: &PgPool,
    filter: &RepoFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Repo>, i64)> {
    let filtered = "WHERE (NOT $1 OR r.is_mirror) AND ($2::text IS NULL OR r.sync_status = $2)
        AND ($3::text IS NULL OR u.username = $3)";
    let status = filter.status.map(SyncStatus::as_str);
    let repos = sqlx::query_as::<_, Repo>(&format!(
        "{SELECT} {filtered} ORDER BY u.username, r.name LIMIT $4 OFFSET $5"
    ))
    .bind(filter.mirrors_only)
    .bind(status)
    .bind(filter.owner.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM repositories r JOIN users u ON u.id = r.owner_id {filtered}"
    ))
    .bind(filter.mirrors_only)
    .bind(status)
    .bind(filter.owner.as_deref())
    .fetch_one(pool)
    .await?;
    Ok((repos, total))
}
