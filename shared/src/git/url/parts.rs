//! Checks of each part of an upstream's raw text. Each admits only what every URL
//! parser on the way (the `url` crate, libgit2, curl, ssh) reads the same way.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::Host;

use super::UrlError;

/// The authority of a `scheme://` URL, as written.
pub(super) struct Authority {
    pub user: String,
    pub password: Option<String>,
    pub host: Host<String>,
    pub port: Option<u16>,
}

pub(super) fn authority(text: &str) -> Result<Authority, UrlError> {
    let (userinfo, hostport) = match text.split_once('@') {
        // a second `@` is where parsers disagree about which one ends the user info
        Some((_, rest)) if rest.contains('@') => return Err(UrlError::BadUserinfo),
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, text),
    };
    let (user, password) = match userinfo {
        None => (String::new(), None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            if user.starts_with('-') {
                return Err(UrlError::OptionLike);
            }
            let password_ok = password.is_none_or(userinfo_chars);
            if user.is_empty() || !userinfo_chars(user) || !password_ok {
                return Err(UrlError::BadUserinfo);
            }
            (user.to_owned(), password.map(str::to_owned))
        }
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or(UrlError::BadHost)?;
        (ipv6(inner)?, port_suffix(after)?)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host_name(host)?, Some(port_number(port)?)),
            None => (host_name(hostport)?, None),
        }
    };
    Ok(Authority {
        user,
        password,
        host,
        port,
    })
}

/// RFC 3986 unreserved, the sub-delimiters the `url` crate leaves as they are, and
/// percent-escapes; no `:`, `@`, `;`, `=`, `/` or brackets.
fn userinfo_chars(text: &str) -> bool {
    percent_escapes_ok(text)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,%".contains(c))
}

fn percent_escapes_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn ipv6(inner: &str) -> Result<Host<String>, UrlError> {
    if inner.contains('%') {
        return Err(UrlError::ZoneId);
    }
    if !inner
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    {
        return Err(UrlError::BadHost);
    }
    inner
        .parse::<Ipv6Addr>()
        .map(Host::Ipv6)
        .map_err(|_| UrlError::BadHost)
}

fn port_suffix(after: &str) -> Result<Option<u16>, UrlError> {
    match after.strip_prefix(':') {
        Some(port) => port_number(port).map(Some),
        None if after.is_empty() => Ok(None),
        None => Err(UrlError::BadHost),
    }
}

fn port_number(text: &str) -> Result<u16, UrlError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// A DNS name of ASCII letters, digits, `-` and `.`, or a dotted-quad IPv4 address;
/// lowercased. Any other numeric form (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`)
/// is refused: resolvers read them as addresses the `url` crate may not.
pub(super) fn host_name(host: &str) -> Result<Host<String>, UrlError> {
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if host.starts_with('-') {
        return Err(UrlError::OptionLike);
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(UrlError::BadHost);
    }
    if host.ends_with('.') {
        return Err(UrlError::TrailingDot);
    }
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok =
        |l: &&str| (1..=63).contains(&l.len()) && !l.starts_with('-') && !l.ends_with('-');
    if host.len() > 253 || !labels.iter().all(label_ok) {
        return Err(UrlError::BadHost);
    }
    let last = labels[labels.len() - 1];
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
    if hex || last.chars().all(|c| c.is_ascii_digit()) {
        return dotted_quad(&labels)
            .map(Host::Ipv4)
            .ok_or(UrlError::NumericHost);
    }
    Ok(Host::Domain(host.to_ascii_lowercase()))
}

fn dotted_quad(labels: &[&str]) -> Option<Ipv4Addr> {
    if labels.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, label) in octets.iter_mut().zip(labels) {
        let plain = label.len() <= 3
            && label.chars().all(|c| c.is_ascii_digit())
            && (label.len() == 1 || !label.starts_with('0'));
        *octet = label.parse().ok().filter(|_| plain)?;
    }
    Some(Ipv4Addr::from(octets))
}

/// A `scheme://` URL's path: RFC 3986 path characters and percent-escapes only.
pub(super) fn url_path(path: &str) -> Result<(), UrlError> {
    let ok = (path.is_empty() || path.starts_with('/'))
        && percent_escapes_ok(path)
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%/".contains(c));
    ok.then_some(()).ok_or(UrlError::BadPath)
}

/// The parts of scp-like `user@host:path`, which git hands to ssh as arguments.
pub(super) fn scp(text: &str) -> Result<(String, Host<String>, String), UrlError> {
    let (before, path) = text.split_once(':').ok_or(UrlError::Malformed)?;
    let (user, host) = match before.split_once('@') {
        Some((_, host)) if host.contains('@') => return Err(UrlError::BadUserinfo),
        Some((user, host)) => (user, host),
        None => ("", before),
    };
    if user.starts_with('-') || path.starts_with('-') {
        return Err(UrlError::OptionLike);
    }
    let user_ok = user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if (!user_ok) || (before.contains('@') && user.is_empty()) {
        return Err(UrlError::BadUserinfo);
    }
    // `http:/x` is a URL missing a slash, not an ssh host named `http`
    if ["http", "https", "git", "ssh", "file"].contains(&host.to_ascii_lowercase().as_str()) {
        return Err(UrlError::Malformed);
    }
    let host = host_name(host)?;
    let path_ok = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~/+-".contains(c));
    if !path_ok {
        return Err(UrlError::BadPath);
    }
    Ok((user.to_owned(), host, path.to_owned()))
}
