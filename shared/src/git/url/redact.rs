//! Credentials in upstream URLs: split off to be sealed, put back for a fetch, and
//! masked wherever a URL or a message about it is shown.

use url::Url;

use super::{UpstreamUrl, MASK};

/// The secrets a URL carries: an http(s) password, or a username that is really a
/// token (`https://TOKEN@host/...`). An ssh user name (`git@`) is not a secret.
fn secrets(raw: &str) -> Vec<String> {
    let Ok(url) = Url::parse(raw.trim()) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        found.push(pw.to_owned());
        if let Ok(decoded) = percent_decode(pw) {
            found.push(decoded);
        }
    }
    let http = matches!(url.scheme(), "http" | "https");
    if http && url.password().is_none() && !url.username().is_empty() {
        found.push(url.username().to_owned());
        if let Ok(decoded) = percent_decode(url.username()) {
            found.push(decoded);
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

/// The URL as it may be shown: credentials replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    redact_text(raw, raw)
}

/// Removes every secret of `url` from `text` (an error message, a log line).
pub fn redact_text(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for secret in secrets(url) {
        out = out.replace(&secret, MASK);
    }
    out
}

/// Splits the secrets off an upstream URL: the canonical URL to store and show, and
/// the user info (`user:password`, or a token user name) to store sealed. URLs without
/// secrets, ssh user names included, come back canonical but otherwise unchanged.
pub fn split_credentials(raw: &str) -> (String, Option<String>) {
    if let Ok(url) = UpstreamUrl::parse(raw) {
        let (clean, userinfo) = url.split_credentials();
        return (clean.as_str().to_owned(), userinfo);
    }
    // Not an upstream the policy accepts (callers check first): never stored as is,
    // so the secrets only need to leave the text.
    let raw = raw.trim();
    if secrets(raw).is_empty() {
        return (raw.to_owned(), None);
    }
    let Ok(mut url) = Url::parse(raw) else {
        return (raw.to_owned(), None);
    };
    let userinfo = match url.password() {
        Some(pw) => format!("{}:{pw}", url.username()),
        None => url.username().to_owned(),
    };
    // both only fail for URLs that cannot carry user info, which had no secrets
    let _ = url.set_password(None);
    let _ = url.set_username("");
    (url.to_string(), Some(userinfo))
}

/// Characters left as they are in user info: RFC 3986's unreserved ones.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The user info to seal for credentials given as fields (a user name and a password
/// or token), in the form [`split_credentials`] returns for a URL that carried them.
pub fn userinfo(username: &str, secret: &str) -> String {
    let enc = |s| percent_encoding::utf8_percent_encode(s, USERINFO).to_string();
    format!("{}:{}", enc(username), enc(secret))
}

/// Credentials given as fields for `url`, checked, as user info to seal: http(s) only
/// (ssh authenticates with a key, `git://` never does), a user name of 1 to 256 and a
/// password or token of 1 to 4,096 characters, no control characters. The error never
/// repeats the secret.
pub fn field_credentials(
    url: &UpstreamUrl,
    username: &str,
    secret: &str,
) -> Result<String, &'static str> {
    if !matches!(url.scheme(), super::Scheme::Http | super::Scheme::Https) {
        return Err("credentials apply to http(s) upstreams only");
    }
    let bad = |text: &str, max: usize| {
        text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control)
    };
    if bad(username, 256) {
        return Err("the user name must be 1 to 256 characters, none of them control characters");
    }
    if bad(secret, 4096) {
        return Err(
            "the password or token must be 1 to 4,096 characters, none of them control characters",
        );
    }
    Ok(userinfo(username, secret))
}

/// The inverse of [`split_credentials`]: the URL a fetch uses.
pub fn with_credentials(clean: &str, userinfo: &str) -> String {
    let Ok(mut url) = Url::parse(clean) else {
        return clean.to_owned();
    };
    let (user, pass) = match userinfo.split_once(':') {
        Some((user, pass)) => (user, Some(pass)),
        None => (userinfo, None),
    };
    if url.set_username(user).is_err() || url.set_password(pass).is_err() {
        return clean.to_owned();
    }
    url.to_string()
}

/// User name and password to answer an HTTP authentication challenge with.
pub fn http_credentials(raw: &str) -> Option<(String, String)> {
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.username().is_empty() {
        return None;
    }
    let user = percent_decode(url.username()).ok()?;
    let pass = percent_decode(url.password().unwrap_or("")).ok()?;
    Some((user, pass))
}
