//! Upstream URLs: which are allowed (no SSRF into the platform's own network), and how
//! they are shown (credentials never leave as clear text).
//!
//! Every upstream goes through [`UpstreamUrl::parse`] once; what is stored, checked and
//! fetched is its canonical form, so the host the policy checks is the host a fetch
//! connects to.

mod address;
mod canonical;
mod parts;
mod redact;
pub mod resolve;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub(crate) use address::check_addr;
pub use address::is_internal;
pub use canonical::{Scheme, UpstreamUrl, MAX_URL_LEN};
pub use redact::{
    field_credentials, http_credentials, redact_text, redact_url, split_credentials, userinfo,
    with_credentials,
};

/// Stand-in for any secret removed from a URL or message.
pub const MASK: &str = "***";

/// Why an upstream is refused. No message repeats the input: it may hold credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("clone URL is empty")]
    Empty,
    #[error("clone URL is longer than 2048 bytes")]
    TooLong,
    #[error("clone URL is not a valid URL")]
    Malformed,
    #[error("URL scheme `{0}` is not allowed (use http, https, git or ssh)")]
    Scheme(String),
    #[error("clone URL contains whitespace or control characters")]
    Whitespace,
    #[error("clone URL contains a backslash")]
    Backslash,
    #[error("clone URL has a fragment (`#`); percent-encode `#` in credentials")]
    Fragment,
    #[error("clone URL has a query (`?`); percent-encode `?` in credentials")]
    Query,
    #[error("clone URL has no host")]
    NoHost,
    #[error("clone URL host is not a valid host name or IP address")]
    BadHost,
    #[error("clone URL host is a number that is not a dotted IPv4 address like 192.0.2.1")]
    NumericHost,
    #[error("clone URL host ends with a dot")]
    TrailingDot,
    #[error("clone URL host has an IPv6 zone id")]
    ZoneId,
    #[error("clone URL host, user or path starts with `-`")]
    OptionLike,
    #[error(
        "clone URL credentials must be one `user[:password]@` of letters, digits and \
         -._~!$&'()*+, (percent-encode anything else)"
    )]
    BadUserinfo,
    #[error("clone URL port is not a number from 1 to 65535")]
    BadPort,
    #[error("clone URL path contains characters that must be percent-encoded")]
    BadPath,
    #[error("local paths and file:// URLs are not allowed")]
    Local,
    #[error("host `{0}` could not be resolved")]
    Unresolvable(String),
    #[error("host `{0}` resolves to a loopback, private or link-local address")]
    PrivateAddress(String),
}

/// Checks an upstream before import and again right before each fetch, so a DNS answer
/// that changed since import (rebinding) is caught too. Returns the canonical URL: the
/// only form to store or fetch.
pub async fn check_upstream(
    raw: &str,
    allow_local_network: bool,
    dns_server: Option<std::net::SocketAddr>,
) -> Result<UpstreamUrl, UrlError> {
    let url = UpstreamUrl::parse(raw)?;
    if allow_local_network {
        return Ok(url);
    }
    vetted_addrs(&url, allow_local_network, dns_server).await?;
    Ok(url)
}

/// The addresses to connect to for `url` at `port`: its host resolved once (as fetches
/// resolve, `dns_server` or the system's resolver) and every address checked, so that
/// a caller connecting to one of these reaches what the policy approved, whatever the
/// name resolves to a moment later. One internal address refuses the host.
pub async fn vetted_addrs(
    url: &UpstreamUrl,
    allow_local_network: bool,
    dns_server: Option<std::net::SocketAddr>,
) -> Result<Vec<std::net::SocketAddr>, UrlError> {
    let Some(host) = url.host() else {
        return Err(UrlError::Local);
    };
    let port = url
        .port()
        .or_else(|| url.scheme().default_port())
        .unwrap_or(0);
    let addrs: Vec<std::net::SocketAddr> = match host {
        url::Host::Ipv4(ip) => vec![(IpAddr::V4(*ip), port).into()],
        url::Host::Ipv6(ip) => vec![(IpAddr::V6(*ip), port).into()],
        url::Host::Domain(name) => resolve::lookup(dns_server, name.clone(), port)
            .await
            .map_err(|_| UrlError::Unresolvable(name.clone()))?,
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(host.to_string()));
    }
    for addr in &addrs {
        check_addr(addr.ip(), allow_local_network)
            .map_err(|_| UrlError::PrivateAddress(host.to_string()))?;
    }
    Ok(addrs)
}

/// The upstream host a URL fetches from, lowercased, for per-host caps; local paths and
/// `file://` URLs count as one host, `local`. scp-like `user@host:path` is ssh.
pub fn upstream_host(raw: &str) -> String {
    if let Ok(parsed) = UpstreamUrl::parse(raw) {
        return parsed
            .host()
            .map_or_else(|| "local".to_owned(), |h| h.to_string());
    }
    // rows stored before the canonical parser: the cap still needs a key
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
