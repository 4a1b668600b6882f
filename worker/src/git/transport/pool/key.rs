//! What decides which checks may share a connection: the key of a pooled client. Two
//! requests share one only when they go to the same origin (scheme, TLS name, port),
//! through the same approved addresses, under the same address policy and with the same
//! credentials.

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use super::super::session::NetworkPolicy;

/// Where requests go: the scheme, the host name (the name TLS verifies and the `Host`
/// header carries) and the port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `None` for anything but an http(s) URL with a host.
    pub fn of(url: &Url) -> Option<Self> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        Some(Self {
            https,
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    /// Whether a request to `url` goes to this origin.
    pub fn holds(&self, url: &Url) -> bool {
        Self::of(url).as_ref() == Some(self)
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The host as a resolver takes it: an IPv6 literal without its brackets.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// The network policy a connection was vetted under. Every field of [`NetworkPolicy`]
/// is here but what this mirror has left of `mirror.max_size`: that differs from one
/// mirror to the next, and like the other limits it is counted per fetch on every byte
/// read, whichever connection carries them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PolicyFingerprint {
    allow_local_network: bool,
    dns_server: Option<SocketAddr>,
    max_advertisement_size: u64,
    max_advertised_refs: u32,
}

impl PolicyFingerprint {
    pub fn of(policy: &NetworkPolicy) -> Self {
        // every field named: one added to the policy must be placed here or left out
        // on purpose, or this does not compile
        let NetworkPolicy {
            allow_local_network,
            dns_server,
            max_advertisement_size,
            max_advertised_refs,
            max_transfer: _,
        } = policy;
        Self {
            allow_local_network: *allow_local_network,
            dns_server: *dns_server,
            max_advertisement_size: *max_advertisement_size,
            max_advertised_refs: *max_advertised_refs,
        }
    }
}

/// What one check saw of an origin: the addresses its name resolved to, all approved,
/// and the policy that approved them. A later check that sees anything else retires
/// the connections made under this one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct View {
    /// Sorted, without repeats: the same answer in another order is the same view.
    pub addrs: Vec<SocketAddr>,
    pub policy: PolicyFingerprint,
}

impl View {
    pub fn new(mut addrs: Vec<SocketAddr>, policy: &NetworkPolicy) -> Self {
        addrs.sort_unstable();
        addrs.dedup();
        Self {
            addrs,
            policy: PolicyFingerprint::of(policy),
        }
    }
}

/// Whose credentials a connection's requests carry: an HMAC-SHA-256 of them under a
/// key drawn at process start and never shown, so a key holds no credential, nor a
/// fingerprint of one that outlives the process.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope([u8; 32]);

impl Scope {
    pub fn of(user: &str, password: &str) -> Self {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(rand::random);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        // the user's length first: ("ab", "c") and ("a", "bc") are different scopes
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scope(..)")
    }
}

/// A pooled client's key: everything that decides what its connections may be used for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub origin: Origin,
    pub view: View,
    /// `None`: a mirror without credentials.
    pub scope: Option<Scope>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NetworkPolicy {
        NetworkPolicy::from_config(&stasis_shared::Config::default())
    }

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        let url = |s: &str| Url::parse(s).unwrap();
        let origin = Origin::of(&url("https://Forge.example/a.git")).unwrap();
        assert_eq!(origin.host, "forge.example");
        assert_eq!(origin.port, 443);
        assert!(origin.holds(&url("https://forge.example:443/b.git?x")));
        assert!(!origin.holds(&url("http://forge.example/a.git")));
        assert!(!origin.holds(&url("https://forge.example:8443/a.git")));
        assert!(!origin.holds(&url("https://other.example/a.git")));
        assert!(Origin::of(&url("git://forge.example/a.git")).is_none());
        let v6 = Origin::of(&url("http://[::1]:8080/")).unwrap();
        assert_eq!(v6.bare_host(), "::1");
    }

    #[test]
    fn a_view_is_the_set_of_addresses_under_one_policy() {
        let a: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:443".parse().unwrap();
        assert_eq!(
            View::new(vec![a, b], &policy()),
            View::new(vec![b, a, b], &policy())
        );
        assert_ne!(View::new(vec![a], &policy()), View::new(vec![b], &policy()));
        let local = NetworkPolicy {
            allow_local_network: true,
            ..policy()
        };
        assert_ne!(View::new(vec![a], &policy()), View::new(vec![a], &local));
        let resolver = NetworkPolicy {
            dns_server: Some("192.0.2.53:53".parse().unwrap()),
            ..policy()
        };
        assert_ne!(View::new(vec![a], &policy()), View::new(vec![a], &resolver));
        // what a mirror has left of its size limit is counted per fetch instead
        let smaller = NetworkPolicy {
            max_transfer: 1,
            ..policy()
        };
        assert_eq!(View::new(vec![a], &policy()), View::new(vec![a], &smaller));
    }

    #[test]
    fn a_scope_tells_credentials_apart_without_holding_them() {
        let alice = Scope::of("alice", "s3cret-pw");
        assert_eq!(alice, Scope::of("alice", "s3cret-pw"));
        assert_ne!(alice, Scope::of("alice", "other-pw"));
        assert_ne!(alice, Scope::of("bob", "s3cret-pw"));
        assert_ne!(Scope::of("ab", "c"), Scope::of("a", "bc"));
        let shown = format!("{alice:?}");
        assert!(
            !shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
