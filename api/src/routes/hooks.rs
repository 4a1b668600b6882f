//! Push webhooks from GitHub, Gitea/Forgejo and GitLab: a verified event enqueues a
//! sync of the mirror (deduplicated like any other request). Unauthenticated by token;
//! the mirror's shared secret is the authentication.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stasis_shared::db::repos;
use stasis_shared::domain::SyncReason;
use subtle::ConstantTimeEq;

use crate::dto::{ErrorBody, SyncAccepted};
use crate::error::ApiError;
use crate::extract::{ApiBytes, ApiPath};
use crate::routes::mirror::request_sync;
use crate::state::AppState;

/// Who sent a verified event, for the `provider` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    GitHub,
    Gitea,
    GitLab,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::GitLab => "gitlab",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn hmac_matches(secret: &str, body: &[u8], hex_digest: &str) -> bool {
    let Ok(expected) = hex::decode(hex_digest.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The provider whose signature scheme the request uses, if its signature is valid:
/// `X-Hub-Signature-256` (GitHub, HMAC-SHA256), `X-Gitea-Signature` /
/// `X-Forgejo-Signature` (HMAC-SHA256, hex), `X-Gitlab-Token` (the secret itself).
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Option<Provider> {
    if let Some(sig) = header(headers, "x-hub-signature-256") {
        let digest = sig.strip_prefix("sha256=")?;
        return hmac_matches(secret, body, digest).then_some(Provider::GitHub);
    }
    if let Some(sig) =
        header(headers, "x-gitea-signature").or_else(|| header(headers, "x-forgejo-signature"))
    {
        return hmac_matches(secret, body, sig).then_some(Provider::Gitea);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        let same: bool = token.as_bytes().ct_eq(secret.as_bytes()).into();
        return same.then_some(Provider::GitLab);
    }
    None
}

/// The event's name as its provider sends it; `None` when the header is missing
/// (a sender that names no event is taken at its word: a push).
fn event(provider: Provider, headers: &HeaderMap) -> Option<&str> {
    match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::Gitea => {
            header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event"))
        }
        Provider::GitLab => header(headers, "x-gitlab-event"),
    }
}

/// Events after which upstream's refs may differ: pushes, and branches or tags created
/// or deleted.
fn moves_refs(provider: Provider, event: &str) -> bool {
    match provider {
        Provider::GitHub | Provider::Gitea => matches!(event, "push" | "create" | "delete"),
        Provider::GitLab => matches!(event, "Push Hook" | "Tag Push Hook"),
    }
}

fn count(provider: &'static str, result: &'static str) {
    metrics::counter!("stasis_webhooks_total", "provider" => provider, "result" => result)
        .increment(1);
}

/// A push webhook: verified with the mirror's secret, it enqueues a sync. GitHub's
/// `ping` is answered without one, and so is any event that cannot change refs (an
/// issue opened, a comment) with 200 and a message saying so. A burst of events (one per pushed branch) coalesces
/// into one sync per `mirror.min_manual_interval`.
#[utoipa::path(
    post, path = "/hooks/{owner}/{repo}", tag = "mirrors", operation_id = "receiveWebhook",
    params(("owner" = String, Path), ("repo" = String, Path)),
    request_body(content = String, description = "The provider's event payload, verified byte for byte", content_type = "application/json"),
    responses(
        (status = 200, description = "GitHub ping (`{\"message\":\"pong\"}`), or an event that does not change refs: no sync"),
        (status = 202, body = SyncAccepted),
        (status = 401, description = "Missing or wrong signature or token", body = ErrorBody),
        (status = 404, description = "No such mirror, or no webhook secret set", body = ErrorBody),
        (status = 413, description = "Payload over 2 MiB", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    // Unknown repository, not a mirror, no secret: one answer, so a caller without the
    // secret learns nothing about which repositories exist.
    let not_found = ApiError::NotFound("mirror with a webhook");
    let repo = repos::find_by_name(&state.pool, &owner, &name).await?;
    let Some((repo, sealed)) = repo
        .filter(|r| r.is_mirror)
        .and_then(|r| r.webhook_secret.clone().map(|s| (r, s)))
    else {
        count("none", "not_found");
        return Err(not_found);
    };
    let secret = state
        .cipher
        .as_ref()
        .and_then(|c| c.open(&sealed).ok())
        .ok_or_else(|| ApiError::Internal("webhook secret cannot be opened".into()))?;
    let Some(provider) = verify(&secret, &headers, &body) else {
        count("none", "bad_signature");
        return Err(ApiError::BadSignature);
    };
    if header(&headers, "x-github-event") == Some("ping") {
        count(provider.as_str(), "ping");
        let pong = Json(serde_json::json!({ "message": "pong" }));
        return Ok((StatusCode::OK, pong).into_response());
    }
    if let Some(event) = event(provider, &headers).filter(|e| !moves_refs(provider, e)) {
        // a repository's issues, comments, stars...: nothing for a mirror to fetch
        count(provider.as_str(), "ignored");
        let ignored = serde_json::json!({
            "message": format!("`{event}` events do not change refs; no sync")
        });
        return Ok((StatusCode::OK, Json(ignored)).into_response());
    }
    let accepted = request_sync(&state, repo.id, SyncReason::Webhook, false).await?;
    count(provider.as_str(), "accepted");
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn each_provider_is_verified_by_its_own_scheme() {
        let (secret, body) = ("s3cret-s3cret", br#"{"ref":"refs/heads/main"}"#.as_slice());
        let good = sign(secret, body);
        let github = format!("sha256={good}");
        assert_eq!(
            verify(secret, &headers(&[("x-hub-signature-256", &github)]), body),
            Some(Provider::GitHub)
        );
        assert_eq!(
            verify(secret, &headers(&[("x-gitea-signature", &good)]), body),
            Some(Provider::Gitea)
        );
        assert_eq!(
            verify(secret, &headers(&[("x-forgejo-signature", &good)]), body),
            Some(Provider::Gitea)
        );
        assert_eq!(
            verify(secret, &headers(&[("x-gitlab-token", secret)]), body),
            Some(Provider::GitLab)
        );
        let wrong = sign("another-secret", body);
        for bad in [
            headers(&[("x-hub-signature-256", &format!("sha256={wrong}"))]),
            headers(&[("x-hub-signature-256", &good)]), // no sha256= prefix
            headers(&[("x-gitea-signature", "zz")]),
            headers(&[("x-gitlab-token", "s3cret-s3cre")]),
            headers(&[]),
        ] {
            assert_eq!(verify(secret, &bad, body), None, "{bad:?}");
        }
        // a signature over other bytes does not verify this body
        assert_eq!(
            verify(secret, &headers(&[("x-gitea-signature", &good)]), b"{}"),
            None
        );
    }
}
