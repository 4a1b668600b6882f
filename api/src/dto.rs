//! Request and response bodies. Field names are the seed's contract.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stasis_shared::db::repos::Repo;
use stasis_shared::git::url::redact_url;
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub name: String,
    pub clone_url: String,
    #[serde(default)]
    pub mirror: bool,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub private: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct RepoResponse {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    pub full_name: String,
    pub description: String,
    pub private: bool,
    pub is_mirror: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_status: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Repo> for RepoResponse {
    fn from(r: &Repo) -> Self {
        Self {
            id: r.id,
            owner: r.owner.clone(),
            name: r.name.clone(),
            full_name: format!("{}/{}", r.owner, r.name),
            description: r.description.clone(),
            private: r.private,
            is_mirror: r.is_mirror,
            mirror_url: shown_url(r),
            last_synced_at: r.last_synced_at,
            sync_status: Some(r.sync_status.clone()),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Only mirrors expose their upstream, and never its credentials.
fn shown_url(r: &Repo) -> Option<String> {
    r.is_mirror
        .then(|| r.mirror_url.as_deref().map(redact_url))
        .flatten()
}

#[derive(Debug, Serialize)]
pub struct MirrorStatus {
    pub is_mirror: bool,
    pub mirror_url: String,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub sync_status: String,
    pub sync_error: String,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    /// The pending or running job, if any.
    pub job_id: Option<Uuid>,
}

impl MirrorStatus {
    pub fn new(r: &Repo, job_id: Option<Uuid>) -> Self {
        Self {
            is_mirror: r.is_mirror,
            mirror_url: shown_url(r).unwrap_or_default(),
            last_synced_at: r.last_synced_at,
            sync_status: r.sync_status.clone(),
            sync_error: r.sync_error.clone().unwrap_or_default(),
            next_sync_at: r.next_sync_at,
            last_duration_ms: r.last_duration_ms,
            job_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SyncAccepted {
    pub message: &'static str,
    pub status: String,
    pub job_id: Uuid,
}

/// `?page=&per_page=` of every listing: pages count from 1, at most 100 items each
/// (30 by default).
pub fn paging(page: Option<u32>, per_page: Option<u32>) -> Result<(u32, u32), ApiError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(30);
    if page == 0 || !(1..=100).contains(&per_page) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "page must be 1 or more and per_page between 1 and 100".into(),
        ));
    }
    Ok((page, per_page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How many of the latest attempts; 20 by default, at most 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct History {
    pub runs: Vec<stasis_shared::db::runs::Run>,
}
