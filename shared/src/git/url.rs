//! Upstream URLs: which are allowed (no SSRF into the platform's own network), and how
//! they are shown (credentials never leave as clear text).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Stand-in for any secret removed from a URL or message.
pub const MASK: &str = "***";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("clone URL is empty")]
    Empty,
    #[error("clone URL is not a valid URL")]
    Malformed,
    #[error("URL scheme `{0}` is not allowed (use http, https, git or ssh)")]
    Scheme(String),
    #[error("local paths and file:// URLs are not allowed")]
    Local,
    #[error("clone URL has no host")]
    NoHost,
    #[error("host `{0}` could not be resolved")]
    Unresolvable(String),
    #[error("host `{0}` resolves to a loopback, private or link-local address")]
    PrivateAddress(String),
}

/// A parsed upstream: what the safety check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Local,
    Remote { host: String, port: u16 },
}

fn parse(raw: &str) -> Result<Target, UrlError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(UrlError::Empty);
    }
    if raw.starts_with('/') || raw.starts_with("./") || raw.starts_with("../") {
        return Ok(Target::Local);
    }
    match Url::parse(raw) {
        Ok(url) => {
            let port_default = match url.scheme() {
                "http" => 80,
                "https" => 443,
                "git" => 9418,
                "ssh" => 22,
                "file" => return Ok(Target::Local),
                other => return Err(UrlError::Scheme(other.to_owned())),
            };
            let host = match url.host() {
                Some(url::Host::Domain(d)) => d.to_owned(),
                Some(url::Host::Ipv4(ip)) => ip.to_string(),
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                None => return Err(UrlError::NoHost),
            };
            if host.is_empty() {
                return Err(UrlError::NoHost);
            }
            Ok(Target::Remote {
                host,
                port: url.port().unwrap_or(port_default),
            })
        }
        // scp-like `user@host:path`, as git itself accepts it
        Err(_) => scp_host(raw)
            .map(|host| Target::Remote { host, port: 22 })
            .ok_or(UrlError::Malformed),
    }
}

fn scp_host(raw: &str) -> Option<String> {
    let (before, path) = raw.split_once(':')?;
    if path.is_empty() || before.contains('/') {
        return None;
    }
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    valid.then(|| host.to_owned())
}

/// Addresses a mirror must never be fetched from unless local networks are allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || v6 == Ipv6Addr::from(0u128)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
}

/// Checks an upstream before import and again right before each fetch, so a DNS answer
/// that changed since import (rebinding) is caught too.
pub async fn check_upstream(raw: &str, allow_local_network: bool) -> Result<(), UrlError> {
    let target = parse(raw)?;
    if allow_local_network {
        return Ok(());
    }
    let (host, port) = match target {
        Target::Local => return Err(UrlError::Local),
        Target::Remote { host, port } => (host, port),
    };
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| UrlError::Unresolvable(host.clone()))?
            .map(|sa| sa.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(host));
    }
    if addrs.into_iter().any(is_internal) {
        return Err(UrlError::PrivateAddress(host));
    }
    Ok(())
}

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
/// The upstream host a URL fetches from, lowercased, for per-host caps; local paths and
/// `file://` URLs count as one host, `local`. scp-like `user@host:path` is ssh.
pub fn upstream_host(raw: &str) -> String {
    if let Ok(url) = url::Url::parse(raw) {
        return url.host_str().unwrap_or("local").to_ascii_lowercase();
    }
    match raw.split_once(':') {
        Some((prefix, _)) if !raw.starts_with('/') && !prefix.contains('/') => prefix
            .rsplit_once('@')
            .map_or(prefix, |(_, host)| host)
            .to_ascii_lowercase(),
        _ => "local".into(),
    }
}

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

/// Splits the secrets off an upstream URL: the URL to store and show, and the user
/// info (`user:password`, or a token user name) to store sealed. URLs without secrets,
/// ssh user names included, come back unchanged.
pub fn split_credentials(raw: &str) -> (String, Option<String>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_host_names_the_host_a_cap_applies_to() {
        for (url, host) in [
            ("https://user:pw@GitHub.com/a/b.git", "github.com"),
            ("git://127.0.0.2:9418/x", "127.0.0.2"),
            ("ssh://git@gitlab.com:22/a/b", "gitlab.com"),
            ("git@codeberg.org:a/b.git", "codeberg.org"),
            ("file:///srv/git/a", "local"),
            ("/srv/git/a", "local"),
        ] {
            assert_eq!(upstream_host(url), host, "{url}");
        }
    }

    #[test]
    fn redacts_passwords_and_token_usernames() {
        assert_eq!(
            redact_url("https://alice:s3cr%40t@example.com/a.git"),
            "https://alice:***@example.com/a.git"
        );
        assert_eq!(
            redact_url("https://ghp_TOKEN@example.com/a.git"),
            "https://***@example.com/a.git"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/a.git"),
            "ssh://git@example.com/a.git"
        );
        let msg = "failed to fetch https://alice:s3cr@t@example.com: 401 (s3cr@t)";
        assert!(!redact_text(msg, "https://alice:s3cr%40t@example.com/a.git").contains("s3cr@t"));
    }

    #[test]
    fn credentials_split_off_and_back() {
        for (raw, clean, secret) in [
            (
                "https://alice:s3cr%40t@example.com/a.git",
                "https://example.com/a.git",
                Some("alice:s3cr%40t"),
            ),
            (
                "https://ghp_TOKEN@example.com/a.git",
                "https://example.com/a.git",
                Some("ghp_TOKEN"),
            ),
            (
                "ssh://git@example.com/a.git",
                "ssh://git@example.com/a.git",
                None,
            ),
            ("git@example.com:a.git", "git@example.com:a.git", None),
            (
                "https://example.com/a.git",
                "https://example.com/a.git",
                None,
            ),
        ] {
            let (stored, sealed) = split_credentials(raw);
            assert_eq!(
                (stored.as_str(), sealed.as_deref()),
                (clean, secret),
                "{raw}"
            );
            if let Some(userinfo) = sealed {
                assert_eq!(with_credentials(&stored, &userinfo), raw);
            }
        }
    }

    #[tokio::test]
    async fn refuses_internal_targets_unless_allowed() {
        for url in [
            "https://127.0.0.1/x.git",
            "http://[::1]/x.git",
            "git://10.1.2.3/x.git",
            "https://169.254.169.254/latest",
            "https://192.168.0.1/x",
            "http://localhost:8080/x.git",
            "git@127.0.0.1:x.git",
            "http://[fd00::1]/x",
            "http://[::ffff:127.0.0.1]/x",
        ] {
            assert_eq!(
                check_upstream(url, false).await,
                Err(UrlError::PrivateAddress(parse(url).map_or(
                    String::new(),
                    |t| match t {
                        Target::Remote { host, .. } => host,
                        Target::Local => String::new(),
                    }
                ))),
                "{url}"
            );
            assert_eq!(check_upstream(url, true).await, Ok(()), "{url}");
        }
        assert_eq!(
            check_upstream("file:///etc", false).await,
            Err(UrlError::Local)
        );
        assert_eq!(
            check_upstream("/srv/git/x", false).await,
            Err(UrlError::Local)
        );
        assert_eq!(check_upstream("/srv/git/x", true).await, Ok(()));
        assert_eq!(check_upstream("file:///srv/git/x", true).await, Ok(()));
        assert!(matches!(
            check_upstream("ftp://example.com/x", true).await,
            Err(UrlError::Scheme(_))
        ));
        assert_eq!(check_upstream("  ", true).await, Err(UrlError::Empty));
        assert_eq!(check_upstream("https://8.8.8.8/x.git", false).await, Ok(()));
    }
}
