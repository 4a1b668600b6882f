//! A mirror's ssh access: its deploy key (generated, rotated, uploaded or removed; only
//! the public half is ever shown) and the upstream host keys its syncs accept
//! (detected under the upstream address policy, then confirmed by the owner).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use stasis_shared::db::users::User;
use stasis_shared::db::{repos, ssh_keys};
use stasis_shared::git::url::{vetted_addrs, Scheme, UpstreamUrl, UrlError};
use stasis_shared::secrets::Cipher;
use stasis_shared::ssh::deploy_key::comment_for;
use stasis_shared::ssh::host_keys::{
    detect, host_key_from_line, host_port, normalize_fingerprint, HostKeyError,
};
use stasis_shared::ssh::{DeployKey, HostKey};

use crate::auth::Authenticated;
use crate::dto::{
    ConfirmedHostKeys, DeployKeyUpload, DeployKeyView, DetectedHostKeys, ErrorBody, HostKeysRequest,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::mirror::managed_mirror;
use crate::state::AppState;

/// Each handshake of a detection gives up after this; three fit in a request's time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(8);
/// More host keys than any server offers.
const MAX_HOST_KEYS: usize = 16;

fn cipher(state: &AppState) -> Result<&Cipher, ApiError> {
    state.cipher.as_ref().ok_or_else(|| {
        ApiError::BadRequest(
            "credentials_unsupported",
            "this server cannot store deploy keys (no secrets.key is configured)".into(),
        )
    })
}

async fn store(
    state: &AppState,
    user: &User,
    owner: &str,
    name: &str,
    key: Option<DeployKey>,
) -> Result<Option<DeployKeyView>, ApiError> {
    let repo = managed_mirror(state, user, owner, name).await?;
    let sealed = match &key {
        Some(key) => Some(cipher(state)?.seal(&key.private_openssh)),
        None => None,
    };
    let pair = sealed
        .as_deref()
        .zip(key.as_ref().map(|k| k.public_openssh.as_str()));
    ssh_keys::set_deploy_key(&state.pool, repo.id, pair).await?;
    Ok(key.map(|k| DeployKeyView {
        public_key: k.public_openssh,
        fingerprint: k.fingerprint,
    }))
}

/// The mirror's deploy key: its public half, to add upstream as a read-only deploy key.
#[utoipa::path(
    get, path = "/repos/{owner}/{repo}/mirror/deploy-key", tag = "mirrors", operation_id = "getDeployKey",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 200, body = DeployKeyView),
        (status = 400, description = "Not a mirror", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such mirror, or it has no deploy key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_deploy_key(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<Json<DeployKeyView>, ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    DeployKeyView::of(&repo)
        .map(Json)
        .ok_or(ApiError::NotFound("deploy key"))
}

/// Generates a new Ed25519 deploy key for the mirror, replacing any it had (a
/// rotation: the old key stops working here at once; remove it upstream).
#[utoipa::path(
    post, path = "/repos/{owner}/{repo}/mirror/deploy-key", tag = "mirrors", operation_id = "rotateDeployKey",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 201, body = DeployKeyView),
        (status = 400, description = "Not a mirror, or no `secrets.key` to seal the key with", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_deploy_key(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<DeployKeyView>), ApiError> {
    cipher(&state)?;
    let key = DeployKey::generate(&comment_for(&owner, &name))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let view = store(&state, &user, &owner, &name, Some(key)).await?;
    Ok((StatusCode::CREATED, Json(view.expect("a key was stored"))))
}

/// Replaces the mirror's deploy key with the owner's own private key.
#[utoipa::path(
    put, path = "/repos/{owner}/{repo}/mirror/deploy-key", tag = "mirrors", operation_id = "uploadDeployKey",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body = DeployKeyUpload,
    responses(
        (status = 200, body = DeployKeyView),
        (status = 400, description = "Not a mirror, not an OpenSSH private key, protected by a passphrase, a type not supported, or no `secrets.key`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_deploy_key(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<DeployKeyUpload>,
) -> Result<Json<DeployKeyView>, ApiError> {
    cipher(&state)?;
    let key = DeployKey::from_upload(&req.private_key, &comment_for(&owner, &name))
        .map_err(|e| ApiError::BadRequest("invalid_ssh_key", e.to_string()))?;
    let view = store(&state, &user, &owner, &name, Some(key)).await?;
    Ok(Json(view.expect("a key was stored")))
}

/// Removes the mirror's deploy key: ssh syncs offer no key from then on.
#[utoipa::path(
    delete, path = "/repos/{owner}/{repo}/mirror/deploy-key", tag = "mirrors", operation_id = "deleteDeployKey",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 204, description = "Removed (or there was none)"),
        (status = 400, description = "Not a mirror", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_deploy_key(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    store(&state, &user, &owner, &name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The mirror's upstream as an ssh URL, or a 400 saying it is not one.
fn ssh_upstream(repo: &repos::Repo) -> Result<UpstreamUrl, ApiError> {
    repo.mirror_url
        .as_deref()
        .and_then(|u| UpstreamUrl::parse(u).ok())
        .filter(|u| u.scheme() == Scheme::Ssh)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "not_ssh",
                "host keys are for ssh upstreams (ssh:// or user@host:path)".into(),
            )
        })
}

/// Lists the host keys the mirror's ssh upstream offers (ed25519, ecdsa, rsa), each
/// with its SHA-256 fingerprint, for the owner to compare with what the upstream
/// publishes before confirming them. The host is resolved once and checked by the
/// upstream address policy, and the handshakes go to that address.
#[utoipa::path(
    post, path = "/repos/{owner}/{repo}/mirror/host-keys/detect", tag = "mirrors", operation_id = "detectHostKeys",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 200, body = DetectedHostKeys),
        (status = 400, description = "Not a mirror, not an ssh upstream, or an address the policy refuses (`blocked_url`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 502, description = "The upstream could not be reached or did not complete an ssh handshake", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn detect_host_keys(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<Json<DetectedHostKeys>, ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    let url = ssh_upstream(&repo)?;
    let mirror = &state.cfg.mirror;
    let addrs = vetted_addrs(&url, mirror.allow_local_network, mirror.dns_server)
        .await
        .map_err(|e| match e {
            UrlError::PrivateAddress(_) | UrlError::Local => {
                ApiError::BadRequest("blocked_url", e.to_string())
            }
            other => ApiError::Upstream(other.to_string()),
        })?;
    let detected = tokio::task::spawn_blocking(move || {
        let mut last = None;
        for addr in addrs {
            match detect(addr, HANDSHAKE_TIMEOUT) {
                Ok(keys) => return Ok((addr, keys)),
                Err(e @ HostKeyError::Connect(..)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("vetted_addrs answers one address at least"))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (addr, host_keys) = detected.map_err(|e| ApiError::Upstream(e.to_string()))?;
    Ok(Json(DetectedHostKeys {
        host: host_port(&url),
        address: addr.to_string(),
        host_keys,
    }))
}

/// Confirms the host keys the mirror's ssh syncs accept, for its upstream's host and
/// port: a sync whose upstream shows any other key fails as `host_key_mismatch` and
/// fetches nothing. An empty list confirms none (ssh syncs then refuse to run).
#[utoipa::path(
    put, path = "/repos/{owner}/{repo}/mirror/host-keys", tag = "mirrors", operation_id = "confirmHostKeys",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body = HostKeysRequest,
    responses(
        (status = 200, body = ConfirmedHostKeys),
        (status = 400, description = "Not a mirror, not an ssh upstream, or a fingerprint or key that is not one", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn confirm_host_keys(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<HostKeysRequest>,
) -> Result<Json<ConfirmedHostKeys>, ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    let url = ssh_upstream(&repo)?;
    if req.fingerprints.len() + req.keys.len() > MAX_HOST_KEYS {
        return Err(ApiError::BadRequest(
            "invalid_host_keys",
            format!("{MAX_HOST_KEYS} host keys at most"),
        ));
    }
    let bad = |e: HostKeyError| ApiError::BadRequest("invalid_host_keys", e.to_string());
    let mut keys: Vec<HostKey> = Vec::new();
    for line in &req.keys {
        let key = host_key_from_line(line).map_err(bad)?;
        if !keys.iter().any(|k| k.fingerprint == key.fingerprint) {
            keys.push(key);
        }
    }
    for text in &req.fingerprints {
        let fingerprint = normalize_fingerprint(text).map_err(bad)?;
        if !keys.iter().any(|k| k.fingerprint == fingerprint) {
            keys.push(HostKey {
                key_type: None,
                fingerprint,
            });
        }
    }
    let host = host_port(&url);
    ssh_keys::set_host_keys(&state.pool, repo.id, &keys, &host).await?;
    Ok(Json(ConfirmedHostKeys {
        host: (!keys.is_empty()).then_some(host),
        host_keys: keys,
    }))
}

/// The host keys the mirror's ssh syncs accept now.
#[utoipa::path(
    get, path = "/repos/{owner}/{repo}/mirror/host-keys", tag = "mirrors", operation_id = "getHostKeys",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 200, body = ConfirmedHostKeys),
        (status = 400, description = "Not a mirror", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_host_keys(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> Result<Json<ConfirmedHostKeys>, ApiError> {
    let repo = managed_mirror(&state, &user, &owner, &name).await?;
    Ok(Json(ConfirmedHostKeys {
        host: repo.ssh_host_keys_for.clone(),
        host_keys: repo.ssh_host_keys.0,
    }))
}
