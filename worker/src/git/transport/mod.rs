//! Upstream connections owned by us rather than libgit2, for `git://` and `http(s)://`.
//! libgit2 still speaks git's protocol and writes objects; we open the connection, so
//! the address it reaches is the one the policy approved (resolved once, checked, then
//! connected to), redirects obey the same policy, what an upstream sends is bounded
//! (ref advertisement, total bytes) and a stopped or timed-out sync closes its socket
//! within a slice instead of reading on.
//!
//! libgit2 picks a transport by URL prefix for the whole process; the rules of one
//! fetch reach it through a [`Session`] entered on the fetch's thread.

mod git_proto;
mod http;
mod meter;
mod pool;
mod redirect;
mod session;
mod ssh;
mod stream;
mod vetted;

use std::cell::RefCell;
use std::sync::{Arc, Once};

use git2::transport::{Service, Transport};

pub(crate) use http::describe;
pub use pool::{configure as configure_reuse, Reuse};
pub(crate) use session::bounded;
pub use session::{Failure, NetworkPolicy, Session};
pub(crate) use ssh::address as ssh_address;
pub(crate) use vetted::{vet_url, vetted_client};

use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::{Scheme, UpstreamUrl};

thread_local! {
    static CURRENT: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

/// The session in force on this thread until dropped.
pub struct Entered(Option<Arc<Session>>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = self.0.take());
    }
}

/// Makes `session` the rules of every connection libgit2 opens on this thread.
pub fn enter(session: Arc<Session>) -> Entered {
    register();
    Entered(CURRENT.with(|c| c.borrow_mut().replace(session)))
}

fn current() -> Result<Arc<Session>, git2::Error> {
    const REFUSED: &std::ffi::CStr =
        c"no fetch session on this thread: upstream connections are refused";
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        // git2 hands libgit2 only the code of a factory's error: the message has to be
        // set here, or the caller reads whatever error came before
        // SAFETY: a static C string; libgit2 copies it into its thread's error state.
        unsafe {
            libgit2_sys::git_error_set_str(libgit2_sys::GIT_ERROR_NET as i32, REFUSED.as_ptr());
        }
        git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Net,
            REFUSED.to_string_lossy(),
        )
    })
}

/// Installs our transports for the process, once.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let install = |scheme: &str, rpc: bool| {
            // SAFETY: inside `Once`, so no other registration runs concurrently; libgit2
            // reads its transport list under its own lock when a remote connects.
            let done = unsafe {
                git2::transport::register(scheme, move |remote| {
                    let session = current()?;
                    if rpc {
                        Transport::smart(remote, true, http::Http::new(session))
                    } else {
                        Transport::smart(remote, false, git_proto::GitProto { session })
                    }
                })
            };
            done.expect("registering an upstream transport");
        };
        install("git", false);
        install("http", true);
        install("https", true);
    });
}

/// A libgit2 error carrying a failure the session recorded.
fn git_error(session: &Session, kind: ErrorKind, message: String) -> git2::Error {
    let _ = session.fail(kind, message.clone());
    git2::Error::new(
        git2::ErrorCode::GenericError,
        git2::ErrorClass::Net,
        message,
    )
}

/// The URL libgit2 asks a transport to fetch from; pushing is refused.
fn requested(session: &Session, url: &str, action: Service) -> Result<url::Url, git2::Error> {
    if !matches!(action, Service::UploadPackLs | Service::UploadPack) {
        return Err(git_error(
            session,
            ErrorKind::Internal,
            "mirrors only fetch: pushing is not supported".into(),
        ));
    }
    url::Url::parse(url).map_err(|_| {
        git_error(
            session,
            ErrorKind::BlockedUrl,
            "upstream URL is not valid".into(),
        )
    })
}

/// Whether a fetch of `url` connects through our transports (and so under the policy
/// at connect time), rather than through libgit2's own.
pub fn owns(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    ["git://", "http://", "https://"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// The URL libgit2 is given for `url`: ours connect under the session; ssh is pinned to
/// an approved address; local paths only where local networks are allowed.
pub(crate) fn target(url: &UpstreamUrl, session: &Session) -> std::io::Result<String> {
    match url.scheme() {
        Scheme::Ssh => ssh::pin(url, session),
        Scheme::Local if !session.policy.allow_local_network => Err(session.fail(
            ErrorKind::BlockedUrl,
            "local paths and file:// URLs are not allowed",
        )),
        _ => Ok(url.as_str().to_owned()),
    }
}
