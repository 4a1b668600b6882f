//! `ssh://` and scp-like upstreams: libgit2 opens these connections itself (through
//! libssh2), so the host is resolved here once, every address checked, and the URL
//! handed to libgit2 names the approved address instead of the host name: a DNS answer
//! that changes between the check and the connect cannot redirect it.

use std::io;
use std::net::{IpAddr, SocketAddr};

use url::Host;

use super::session::Session;
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::UpstreamUrl;

/// The address an ssh connection to `url` goes to: its host resolved once, every
/// address checked under the policy, the first one taken.
pub(crate) fn address(url: &UpstreamUrl, session: &Session) -> io::Result<SocketAddr> {
    let host = match url.host() {
        Some(Host::Domain(name)) => name.clone(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(session.fail(ErrorKind::BlockedUrl, "ssh URL has no host")),
    };
    let port = url.port().unwrap_or(22);
    Ok(session.resolve(&host, port)?[0])
}

/// The URL to give libgit2: `url` with its host replaced by an approved address.
pub fn pin(url: &UpstreamUrl, session: &Session) -> io::Result<String> {
    let ip = address(url, session)?.ip();
    let at = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let user = match url.username() {
        "" => String::new(),
        user => format!("{user}@"),
    };
    Ok(if url.is_scp_like() {
        format!("{user}{at}:{}", url.path())
    } else {
        let port = url
            .port()
            .filter(|p| *p != 22)
            .map_or(String::new(), |p| format!(":{p}"));
        format!("ssh://{user}{at}{port}{}", url.path())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::git::stop::StopFlag;
    use crate::git::transport::NetworkPolicy;

    fn session(allow_local_network: bool) -> Arc<Session> {
        let policy = NetworkPolicy {
            allow_local_network,
            ..NetworkPolicy::from_config(&stasis_shared::Config::default())
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        Session::new(policy, deadline, Arc::new(StopFlag::default()))
    }

    #[test]
    fn the_host_is_replaced_by_the_address_it_was_checked_at() {
        let open = session(true);
        for (raw, pinned) in [
            ("ssh://git@localhost/a/b.git", "ssh://git@127.0.0.1/a/b.git"),
            (
                "ssh://git@localhost:2222/a/b.git",
                "ssh://git@127.0.0.1:2222/a/b.git",
            ),
            ("git@localhost:a/b.git", "git@127.0.0.1:a/b.git"),
            ("ssh://[::1]/x", "ssh://[::1]/x"),
        ] {
            let url = UpstreamUrl::parse(raw).unwrap();
            assert_eq!(pin(&url, &open).unwrap(), pinned, "{raw}");
        }
    }

    #[test]
    fn an_internal_address_is_refused_before_libgit2_connects() {
        let strict = session(false);
        for raw in [
            "ssh://git@localhost/a.git",
            "git@127.0.0.1:a.git",
            "ssh://[::1]/x",
        ] {
            let url = UpstreamUrl::parse(raw).unwrap();
            assert!(pin(&url, &strict).is_err(), "{raw}");
            assert_eq!(
                strict.failure().map(|f| f.kind),
                Some(ErrorKind::BlockedUrl)
            );
        }
    }
}
