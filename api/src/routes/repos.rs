use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use stasis_shared::db::{jobs, repos, runs};
use stasis_shared::domain::SyncReason;
use stasis_shared::git::url::{check_upstream, UrlError};

use crate::auth::{can_manage, can_see, Authenticated, Caller};
use crate::dto::{History, HistoryQuery, ImportRequest, MirrorStatus, RepoResponse, SyncAccepted};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

const MAX_NAME_LEN: usize = 100;

/// Names as a git host allows them: ASCII letters, digits, `.`, `-`, `_`; no leading
/// dot or dash, no `..`, no `.git` suffix (the bare directory adds it).
fn validate_name(name: &str) -> Result<(), ApiError> {
    let bad = |msg: &str| Err(ApiError::BadRequest("invalid_name", msg.into()));
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("name must be 1 to 100 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return bad("name may contain only letters, digits, '.', '-' and '_'");
    }
    if name.starts_with(['.', '-']) || name.contains("..") || name.ends_with(".git") {
        return bad("name may not start with '.' or '-', contain '..' or end in '.git'");
    }
    Ok(())
}

pub async fn import(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiJson(req): ApiJson<ImportRequest>,
) -> Result<(StatusCode, Json<RepoResponse>), ApiError> {
    validate_name(&req.name)?;
    let clone_url = req.clone_url.trim();
    check_upstream(clone_url, state.cfg.mirror.allow_local_network)
        .await
        .map_err(|e| {
            let code = match e {
                UrlError::PrivateAddress(_) | UrlError::Local => "blocked_url",
                _ => "invalid_url",
            };
            ApiError::BadRequest(code, e.to_string())
        })?;
    let created = repos::create(
        &state.pool,
        &repos::NewRepo {
            owner_id: user.id,
            name: &req.name,
            description: req.description.as_deref().unwrap_or(""),
            private: req.private.unwrap_or(false),
            is_mirror: req.mirror,
            clone_url,
        },
    )
    .await;
    let repo_id = match created {
        Ok(id) => id,
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(ApiError::Conflict(format!(
                "repository {}/{} already exists",
                user.username, req.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    state.enqueuer.enqueue(repo_id, SyncReason::Import).await?;
    let repo = repos::find(&state.pool, repo_id)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    Ok((StatusCode::ACCEPTED, Json(RepoResponse::from(&repo))))
}

async fn visible_repo(
    state: &AppState,
    caller: Option<&stasis_shared::db::users::User>,
    owner: &str,
    name: &str,
) -> Result<repos::Repo, ApiError> {
    match repos::find_by_name(&state.pool, owner, name).await? {
        // Private repositories are invisible to others: 404, so existence does not leak.
        Some(repo) if can_see(caller, &repo) => Ok(repo),
        _ => Err(ApiError::NotFound("repository")),
    }
}

pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<RepoResponse>, ApiError> {
    let repo = visible_repo(&state, caller.as_ref(), &owner, &name).await?;
    Ok(Json(RepoResponse::from(&repo)))
}

pub async fn sync(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    Path((owner, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<SyncAccepted>), ApiError> {
    let repo = visible_repo(&state, Some(&user), &owner, &name).await?;
    if !can_manage(&user, &repo) {
        return Err(ApiError::Forbidden);
    }
    if !repo.is_mirror {
        return Err(ApiError::BadRequest(
            "not_a_mirror",
            "repository is not a mirror".into(),
        ));
    }
    let enqueued = state
        .enqueuer
        .enqueue(repo.id, SyncReason::Manual)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    let status = repos::find(&state.pool, repo.id)
        .await?
        .map_or_else(|| "queued".to_owned(), |r| r.sync_status);
    let message = if enqueued.created {
        "Mirror sync started"
    } else {
        "Mirror sync already queued or in progress"
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            message,
            status,
            job_id: enqueued.job_id,
        }),
    ))
}

pub async fn mirror_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<MirrorStatus>, ApiError> {
    let repo = visible_repo(&state, caller.as_ref(), &owner, &name).await?;
    let job_id = jobs::active_job(&state.pool, repo.id).await?;
    Ok(Json(MirrorStatus::new(&repo, job_id)))
}

/// The seed's "sync history": the latest attempts, newest first.
pub async fn mirror_history(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((owner, name)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            "limit must be between 1 and 100".into(),
        ));
    }
    let repo = visible_repo(&state, caller.as_ref(), &owner, &name).await?;
    let runs = runs::for_repo(&state.pool, repo.id, i64::from(limit)).await?;
    Ok(Json(History { runs }))
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names() {
        for ok in ["linux", "a", "my-repo_1.2", "A.b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a..b",
            "a/b",
            "x.git",
            "sp ace",
            &"x".repeat(101),
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
