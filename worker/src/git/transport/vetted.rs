//! How the worker makes HTTP requests to an upstream: clients whose host names resolve
//! through the fetch session (every address checked, the connection made to an
//! approved one, so DNS rebinding cannot slip past) and whose redirects obey the same
//! policy. Smart HTTP and Git LFS downloads share the rules, the TLS context and the
//! client settings here.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use url::Url;

use super::session::Session;
use stasis_shared::domain::ErrorKind;

const MAX_REDIRECTS: usize = 5;

pub(super) fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// An HTTP client under `session`'s policy: a host name connects only to addresses the
/// session resolved and approved, and a redirect is followed only where
/// [`vet_url`] would allow a request. Git LFS's requests go through one of these; smart
/// HTTP's go through the pool's clients ([`super::pool`]), pinned to the addresses a
/// check approved, whose redirects the transport follows under the same rules.
pub(crate) fn vetted_client(session: &Arc<Session>) -> reqwest::Result<reqwest::Client> {
    let policy_session = session.clone();
    client_builder()
        .dns_resolver(Arc::new(Checked(session.clone())))
        .redirect(Policy::custom(move |attempt| {
            match allowed_redirect(&policy_session, attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        }))
        .build()
}

/// What every upstream client has: the shared TLS context, git's user agent, no proxy
/// from the environment, a bounded connect.
pub(super) fn client_builder() -> reqwest::ClientBuilder {
    let builder = match tls_context() {
        Some(tls) => reqwest::Client::builder().use_preconfigured_tls(tls),
        // reqwest builds its own and reports why that fails too
        None => reqwest::Client::builder(),
    };
    builder
        .user_agent(concat!(
            "git/2.0 (stasis-mirror-sync ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ))
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
}

/// The process's one TLS context (roots and settings, no connection state), shared by
/// every fetch's client. Building one loads and parses the system's CA bundle: 57 ms of
/// CPU with OpenSSL 3 here, more than all the rest of a no-op sync, which reqwest would
/// otherwise pay for each client, so for each sync. Certificates are verified as with
/// reqwest's own (`TlsConnector::new` is native-tls's defaults; reqwest adds nothing to
/// them without HTTP/2). `None` if it cannot be built.
fn tls_context() -> Option<native_tls::TlsConnector> {
    static TLS: OnceLock<Option<native_tls::TlsConnector>> = OnceLock::new();
    TLS.get_or_init(|| native_tls::TlsConnector::new().ok())
        .clone()
}

/// A URL the upstream named (an LFS download's href) passes where a request may go: http
/// or https, no credentials or fragment, an address literal the policy allows. A host
/// name is checked when the client resolves it.
pub(crate) fn vet_url(session: &Session, url: &Url) -> io::Result<()> {
    allowed_redirect(session, &[], url)
}

/// A redirect is followed only where the fetch itself could have gone: no https to
/// http, no credentials or fragments in the target, and an IP target that passes the
/// address policy (a host name is checked when it is resolved). `previous` holds every
/// URL of the request so far, the first one included.
pub(super) fn allowed_redirect(
    session: &Session,
    previous: &[Url],
    next: &Url,
) -> Result<(), io::Error> {
    let refuse = |why: String| Err(session.fail(ErrorKind::BlockedUrl, why));
    if previous.len() > MAX_REDIRECTS {
        return refuse(format!(
            "upstream redirected more than {MAX_REDIRECTS} times"
        ));
    }
    let from_https = previous.last().is_some_and(|u| u.scheme() == "https");
    match next.scheme() {
        "https" => {}
        "http" if !from_https => {}
        _ => return refuse("upstream redirected to a scheme that is not allowed".into()),
    }
    if !next.username().is_empty() || next.password().is_some() || next.fragment().is_some() {
        return refuse("upstream redirected to a URL with credentials or a fragment".into());
    }
    if let Some(ip) = host_ip(next) {
        session.check(next.host_str().unwrap_or_default(), ip)?;
    }
    Ok(())
}

/// reqwest's resolver: the session's answer, every address checked, so the client can
/// connect only to approved addresses.
struct Checked(Arc<Session>);

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let session = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = stasis_shared::git::url::resolve::lookup(
                session.policy.dns_server,
                host.clone(),
                0,
            )
            .await
            .map_err(|e| session.fail(ErrorKind::Network, e))?;
            for addr in &addrs {
                session.check(&host, addr.ip())?;
            }
            if addrs.is_empty() {
                return Err(session
                    .fail(
                        ErrorKind::Network,
                        format!("host `{host}` could not be resolved"),
                    )
                    .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter().collect::<Vec<SocketAddr>>().into_iter());
            Ok(addrs)
        })
    }
}
