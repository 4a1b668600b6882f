//! Upstream HTTP(S) connections kept between fetches, so that a fleet of mirrors on one
//! forge pays one TCP and TLS handshake rather than one per check.
//!
//! A connection is reused only where the check at hand would have opened the same one:
//! every check resolves the upstream's name afresh and checks each address under its
//! own session, and only then is handed a client whose [`Key`] is exactly what it saw
//! (origin, approved addresses, policy) and whose credentials it carries. That client
//! can connect to those addresses only, and a check that sees its origin otherwise (the
//! name moved, the policy changed) retires the clients of the old view first, so a
//! pooled connection never reaches what a check would refuse. Redirects, deadlines, the
//! stop flag and every limit stay the fetch's own: they are applied around each request
//! by the transport, whichever connection carries it.
//!
//! Connections live on one small runtime of the process: a fetch's own runtime ends
//! with the fetch, and the connections it drove would end with it.

mod cache;
mod client;
mod key;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use url::Url;

use super::session::Session;
use cache::Cache;
pub(super) use key::Scope;
use key::{Key, Origin, View};
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::resolve;

/// Whether and how long upstream connections are kept (`worker.reuse_connections`,
/// `worker.idle_connection_timeout`, `worker.max_pooled_hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    pub enabled: bool,
    pub idle_timeout: Duration,
    /// Keys kept at once.
    pub max_hosts: usize,
    /// Idle connections one key keeps: more than the fetches running at once would
    /// never be used.
    pub max_idle_per_host: usize,
}

impl Reuse {
    pub fn from_config(cfg: &stasis_shared::Config) -> Self {
        Self {
            enabled: cfg.worker.reuse_connections,
            idle_timeout: cfg.worker.idle_connection_timeout,
            max_hosts: cfg.worker.max_pooled_hosts as usize,
            max_idle_per_host: cfg.worker.concurrency,
        }
    }
}

impl Default for Reuse {
    fn default() -> Self {
        Self::from_config(&stasis_shared::Config::default())
    }
}

struct Pool {
    reuse: Reuse,
    cache: Cache<reqwest::Client>,
}

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        Mutex::new(Pool {
            reuse: Reuse::default(),
            cache: Cache::default(),
        })
    })
    .lock()
    .unwrap_or_else(PoisonError::into_inner)
}

/// Sets how this process keeps upstream connections, closing every kept one.
pub fn configure(reuse: Reuse) {
    let mut pool = pool();
    pool.reuse = reuse;
    pool.cache.clear();
}

/// Whether connections outlive the fetch that opened them.
pub(super) fn reusing() -> bool {
    pool().reuse.enabled
}

/// A client for requests to one origin, checked out for one fetch.
#[derive(Clone)]
pub(super) struct Pinned {
    origin: Origin,
    client: reqwest::Client,
}

impl Pinned {
    pub fn serves(&self, url: &Url) -> bool {
        self.origin.holds(url)
    }

    /// A request to `url`; `None` if `url` is not this client's origin.
    pub fn request(&self, method: reqwest::Method, url: Url) -> Option<reqwest::RequestBuilder> {
        self.serves(&url).then(|| self.client.request(method, url))
    }

    /// Sends `request` (made by [`Self::request`]), counting the connection it used.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        client::send(self.origin.scheme(), request).await
    }
}

/// A client for `url`'s origin under `session`: the name resolved now and every address
/// checked, the clients of any other view of the origin retired, then the pooled client
/// of exactly this view and `scope` (or a new one).
pub(super) async fn checkout(
    session: &Session,
    url: &Url,
    scope: Option<Scope>,
) -> io::Result<Pinned> {
    let Some(origin) = Origin::of(url) else {
        return Err(session.fail(
            ErrorKind::BlockedUrl,
            "only http and https URLs are fetched over HTTP",
        ));
    };
    let addrs = addresses(session, &origin).await?;
    let view = View::new(addrs, &session.policy);
    let retired = pool().cache.retire(&origin, &view);
    if retired > 0 {
        tracing::debug!(
            host = %origin.host,
            retired,
            "upstream answers otherwise than before: its kept connections are closed"
        );
    }
    for addr in &view.addrs {
        session.check(origin.bare_host(), addr.ip())?;
    }
    let key = Key {
        origin: origin.clone(),
        view,
        scope,
    };
    let built = |reuse: &Reuse| client::pinned(&key.origin, &key.view.addrs, reuse);
    let client = {
        let mut pool = pool();
        let reuse = pool.reuse;
        if reuse.enabled {
            let key = key.clone();
            pool.cache.get_or_make(
                key,
                Instant::now(),
                reuse.idle_timeout,
                reuse.max_hosts,
                || built(&reuse),
            )
        } else {
            built(&reuse)
        }
    }
    .map_err(|e| session.fail(ErrorKind::Internal, format!("HTTP client: {e}")))?;
    Ok(Pinned { origin, client })
}

/// The origin's addresses: the literal one, or what its name resolves to now (the
/// system's resolver or `mirror.dns_server`), not yet checked.
async fn addresses(session: &Session, origin: &Origin) -> io::Result<Vec<SocketAddr>> {
    let host = origin.bare_host();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, origin.port)]);
    }
    let addrs = resolve::lookup(session.policy.dns_server, host.to_owned(), origin.port)
        .await
        .map_err(|e| session.fail(ErrorKind::Network, e))?;
    if addrs.is_empty() {
        return Err(session.fail(
            ErrorKind::Network,
            format!("host `{host}` could not be resolved"),
        ));
    }
    Ok(addrs)
}

/// Runs HTTP work from a fetch thread on the runtime the kept connections live on.
pub(super) fn block_on<F: Future>(session: &Session, fut: F) -> io::Result<F::Output> {
    match runtime() {
        Ok(rt) => Ok(rt.block_on(fut)),
        Err(e) => Err(session.fail(ErrorKind::Internal, format!("no runtime: {e}"))),
    }
}

/// Returns once the connections' runtime has run what an answer's end woke there. A
/// connection goes back to its client's pool in a task of that runtime after its
/// answer ended; a check that asks for one before then gets it anyway, but its client
/// has started a connection of its own meanwhile, which it then completes for nothing.
pub(super) fn settle(session: &Session) {
    if let Ok(rt) = runtime() {
        // queued behind the tasks already woken, which run first
        let _ = block_on(session, rt.spawn(async {}));
    }
}

fn runtime() -> &'static io::Result<tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // one thread moves (and decrypts) the bytes of every connection, a small part
        // of a fetch's work: libgit2's, and the requests' own, stay on the fetch
        // threads that wait for them
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("upstream-http")
            .enable_all()
            .build()
    })
}
