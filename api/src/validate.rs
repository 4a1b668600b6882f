//! Input rules shared by several endpoints: repository names, intervals, upstream URLs.

use std::time::Duration;

use stasis_shared::git::url::{check_upstream, split_credentials, UrlError};

use crate::error::ApiError;
use crate::state::AppState;

const MAX_NAME_LEN: usize = 100;

/// Names as a git host allows them: ASCII letters, digits, `.`, `-`, `_`; no leading
/// dot or dash, no `..`, no `.git` suffix (the bare directory adds it).
pub fn name(name: &str) -> Result<(), ApiError> {
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

/// A sync interval like `30m`, no shorter than `min`.
pub fn interval(text: &str, min: Duration) -> Result<Duration, ApiError> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|_| {
        ApiError::BadRequest(
            "invalid_interval",
            format!("sync_interval `{text}` is not a duration like 30m or 2h"),
        )
    })?;
    if parsed < min {
        return Err(ApiError::BadRequest(
            "invalid_interval",
            format!(
                "sync_interval must be at least {}",
                humantime::format_duration(min)
            ),
        ));
    }
    if parsed.as_secs() > i32::MAX as u64 {
        return Err(ApiError::BadRequest(
            "invalid_interval",
            "sync_interval is too long".into(),
        ));
    }
    Ok(parsed)
}

/// Checks an upstream (scheme, and no internal addresses unless allowed) and splits
/// its credentials off: the URL to store, and the credentials sealed for storage.
pub async fn upstream(state: &AppState, raw: &str) -> Result<(String, Option<String>), ApiError> {
    let raw = raw.trim();
    check_upstream(raw, state.cfg.mirror.allow_local_network)
        .await
        .map_err(|e| {
            let code = match e {
                UrlError::PrivateAddress(_) | UrlError::Local => "blocked_url",
                _ => "invalid_url",
            };
            ApiError::BadRequest(code, e.to_string())
        })?;
    let (clean, userinfo) = split_credentials(raw);
    let sealed = match (userinfo, &state.cipher) {
        (None, _) => None,
        (Some(userinfo), Some(cipher)) => Some(cipher.seal(&userinfo)),
        (Some(_), None) => {
            return Err(ApiError::BadRequest(
                "credentials_unsupported",
                "this server cannot store credentials (no secrets.key is configured); \
                 use a public URL"
                    .into(),
            ))
        }
    };
    Ok((clean, sealed))
}

/// A notification receiver: http(s) only, and the upstream address policy (no
/// internal addresses unless `mirror.allow_local_network`).
pub async fn notify_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let bad = |msg: String| ApiError::BadRequest("invalid_url", msg);
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
        return Err(bad("the notification URL must be an http(s) URL".into()));
    }
    check_upstream(url, state.cfg.mirror.allow_local_network)
        .await
        .map_err(|e| match e {
            UrlError::PrivateAddress(_) | UrlError::Local => {
                ApiError::BadRequest("blocked_url", e.to_string())
            }
            other => bad(other.to_string()),
        })?;
    Ok(url.to_owned())
}

/// Selective-sync ref patterns: at most 50, each a ref name with one `*` at most.
pub fn ref_patterns(field: &str, patterns: Vec<String>) -> Result<Vec<String>, ApiError> {
    let bad = |msg: String| Err(ApiError::BadRequest("invalid_refs", msg));
    if patterns.len() > 50 {
        return bad(format!("{field}: 50 patterns at most"));
    }
    for pattern in &patterns {
        if let Some(why) = stasis_shared::git::selection::invalid_pattern(pattern) {
            return bad(format!("{field}: `{pattern}` {why}"));
        }
    }
    Ok(patterns)
}

/// A webhook secret (8–256 characters, no surrounding space), sealed for storage.
pub fn webhook_secret(state: &AppState, secret: &str) -> Result<String, ApiError> {
    let length = secret.chars().count();
    if !(8..=256).contains(&length) || secret.trim() != secret {
        return Err(ApiError::BadRequest(
            "invalid_secret",
            "webhook_secret must be 8 to 256 characters without surrounding spaces".into(),
        ));
    }
    let cipher = state.cipher.as_ref().ok_or_else(|| {
        ApiError::BadRequest(
            "credentials_unsupported",
            "this server cannot store secrets (no secrets.key is configured)".into(),
        )
    })?;
    Ok(cipher.seal(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["linux", "a", "my-repo_1.2", "A.b"] {
            assert!(name(ok).is_ok(), "{ok}");
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
            assert!(name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals() {
        let min = Duration::from_secs(60);
        assert_eq!(interval("1h 30m", min).unwrap(), Duration::from_secs(5400));
        for bad in ["soon", "30s", "", "-5m", "100000000h"] {
            assert!(interval(bad, min).is_err(), "{bad}");
        }
    }
}
