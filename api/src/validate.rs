//! Input rules shared by several endpoints: repository names, intervals, upstream URLs,
//! and a bound on every free-text field. The OpenAPI schema in `dto.rs` states the same
//! bounds: a client that follows it is never refused for length.

use std::time::Duration;

use stasis_shared::domain::names::check_repo_name;
use stasis_shared::git::url::{check_upstream, Scheme, UpstreamUrl, UrlError};

use crate::dto::Credentials;
use crate::error::ApiError;
use crate::state::AppState;

/// In characters, as JSON Schema's `maxLength` counts them.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// An interval is a few words (`1h 30m`); anything longer is not one.
pub const MAX_INTERVAL_LEN: usize = 64;
pub use stasis_shared::git::url::MAX_URL_LEN;

/// A listing's `limit`: `default` when not given, else 1 to `max`; refused with `code`
/// (each endpoint keeps its own).
pub fn limit(
    code: &'static str,
    given: Option<i64>,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match given.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(ApiError::BadRequest(
            code,
            format!("limit must be 1 to {max}, not {n}"),
        )),
    }
}

/// Names as a git host allows them (`stasis_shared::domain::names`): ASCII letters, digits,
/// `.`, `-`, `_`; no leading dot or dash, no `..`, no `.git` suffix.
pub fn name(name: &str) -> Result<(), ApiError> {
    check_repo_name(name).map_err(|msg| ApiError::BadRequest("invalid_name", msg.into()))
}

/// A repository description: at most 1,000 characters.
pub fn description(text: &str) -> Result<(), ApiError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::BadRequest(
            "invalid_description",
            format!("description must be {MAX_DESCRIPTION_LEN} characters at most"),
        ));
    }
    Ok(())
}

/// A sync interval like `30m`, from `min` to `max` (`mirror.min_sync_interval` and
/// `mirror.max_sync_interval`).
pub fn interval(text: &str, min: Duration, max: Duration) -> Result<Duration, ApiError> {
    if text.chars().count() > MAX_INTERVAL_LEN {
        return Err(ApiError::BadRequest(
            "invalid_interval",
            format!("sync_interval must be {MAX_INTERVAL_LEN} characters at most"),
        ));
    }
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
    if parsed > max || parsed.as_secs() > i32::MAX as u64 {
        return Err(ApiError::BadRequest(
            "invalid_interval",
            format!(
                "sync_interval must be at most {}",
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(parsed)
}

/// A refused URL as a 400; the message names the problem, never the input, which may
/// carry credentials.
fn url_error(e: UrlError) -> ApiError {
    let code = match e {
        UrlError::PrivateAddress(_) | UrlError::Local => "blocked_url",
        _ => "invalid_url",
    };
    ApiError::BadRequest(code, e.to_string())
}

/// Checks an upstream (its canonical form, and no internal addresses unless allowed)
/// and splits its credentials off: the canonical URL to store (never the raw input),
/// and the credentials sealed for storage: those the URL carried, or `fields` (not
/// both).
pub async fn upstream(
    state: &AppState,
    raw: &str,
    fields: Option<&Credentials>,
) -> Result<(String, Option<String>), ApiError> {
    let checked = checked(state, raw).await?;
    let (clean, in_url) = checked.split_credentials();
    let userinfo = match (in_url, fields) {
        (Some(_), Some(_)) => {
            return Err(invalid_credentials(
                "give credentials in the URL or as `credentials`, not both",
            ))
        }
        (Some(info), None) => Some(info),
        (None, Some(fields)) => Some(credentials_for(&clean, fields)?),
        (None, None) => None,
    };
    let sealed = userinfo.map(|info| seal(state, &info)).transpose()?;
    Ok((clean.as_str().to_owned(), sealed))
}

/// `fields` for the stored upstream `url`, as sealed user info.
pub fn credentials(state: &AppState, url: &str, fields: &Credentials) -> Result<String, ApiError> {
    let url = UpstreamUrl::parse(url).map_err(url_error)?;
    seal(state, &credentials_for(&url, fields)?)
}

/// Credentials as fields: a user name with exactly one of a password or a token.
fn credentials_for(url: &UpstreamUrl, fields: &Credentials) -> Result<String, ApiError> {
    let secret = match (&fields.password, &fields.token) {
        (Some(secret), None) | (None, Some(secret)) => secret,
        _ => {
            return Err(invalid_credentials(
                "credentials take a password or a token, one of the two",
            ))
        }
    };
    stasis_shared::git::url::field_credentials(url, &fields.username, secret)
        .map_err(invalid_credentials)
}

fn invalid_credentials(why: &str) -> ApiError {
    ApiError::BadRequest("invalid_credentials", why.into())
}

/// Seals user info with the configured key; refused when the server has none.
fn seal(state: &AppState, userinfo: &str) -> Result<String, ApiError> {
    match &state.cipher {
        Some(cipher) => Ok(cipher.seal(userinfo)),
        None => Err(ApiError::BadRequest(
            "credentials_unsupported",
            "this server cannot store credentials (no secrets.key is configured); \
             use a public URL"
                .into(),
        )),
    }
}

/// A notification receiver: http(s) only, and the upstream address policy (no
/// internal addresses unless `mirror.allow_local_network`). Returns its canonical form.
pub async fn notify_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let parsed = UpstreamUrl::parse(url).map_err(url_error)?;
    if !matches!(parsed.scheme(), Scheme::Http | Scheme::Https) {
        return Err(ApiError::BadRequest(
            "invalid_url",
            "the notification URL must be an http(s) URL".into(),
        ));
    }
    Ok(checked(state, url).await?.as_str().to_owned())
}

/// The canonical URL, once the address policy passed it (resolved as fetches resolve).
async fn checked(state: &AppState, raw: &str) -> Result<UpstreamUrl, ApiError> {
    let mirror = &state.cfg.mirror;
    check_upstream(raw, mirror.allow_local_network, mirror.dns_server)
        .await
        .map_err(url_error)
}

/// Selective-sync ref patterns: at most 50, each a ref name with one `*` at most.
pub fn ref_patterns(field: &str, patterns: Vec<String>) -> Result<Vec<String>, ApiError> {
    let bad = |msg: String| Err(ApiError::BadRequest("invalid_refs", msg));
    if patterns.len() > 50 {
        return bad(format!("{field}: 50 patterns at most"));
    }
    for pattern in &patterns {
        if let Some(why) = stasis_shared::git::selection::invalid_pattern(pattern) {
            // a pattern too long to be one is not repeated back
            if pattern.len() > 255 {
                return bad(format!("{field}: a pattern {why}"));
            }
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

/// A text filter, `None` when empty; refused past `max` characters.
pub fn filter_text(
    field: &str,
    text: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match text.map(|t| t.trim().to_owned()) {
        Some(t) if t.chars().count() > max => Err(ApiError::BadRequest(
            "invalid_query",
            format!("{field} takes at most {max} characters"),
        )),
        Some(t) if t.is_empty() => Ok(None),
        t => Ok(t),
    }
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
    fn descriptions() {
        assert!(description(&"é".repeat(MAX_DESCRIPTION_LEN)).is_ok());
        assert!(description(&"x".repeat(MAX_DESCRIPTION_LEN + 1)).is_err());
    }

    #[test]
    fn intervals() {
        let min = Duration::from_secs(60);
        let max = Duration::from_secs(24 * 3600);
        assert_eq!(
            interval("1h 30m", min, max).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(interval("24h", min, max).unwrap(), max);
        let long = format!("{}1h", " ".repeat(MAX_INTERVAL_LEN));
        for bad in [
            "soon",
            "30s",
            "",
            "-5m",
            "100000000h",
            "100000h",
            "25h",
            &long,
        ] {
            assert!(interval(bad, min, max).is_err(), "{bad}");
        }
    }
}
