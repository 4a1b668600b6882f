//! Smart HTTP(S) with our own clients: a request's host name is resolved and every
//! address checked under the session before a client pinned to those addresses (kept
//! between fetches when `worker.reuse_connections` is on, see [`super::pool`]) sends
//! it; a redirect is followed only to a URL that passes the same policy; every response
//! is read under the session's deadline, stop flag and limits.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use reqwest::{Method, StatusCode};
use url::Url;

use super::meter::{Meter, Phase};
use super::pool::{self, Pinned, Scope};
use super::redirect::{self, carries_credentials, Hop};
use super::session::{bounded, Session};
use super::vetted::host_ip;
use super::{git_error, requested};
use stasis_shared::domain::ErrorKind;

const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

/// How long an answer nobody reads (a 401, a redirect, the end of one libgit2 stopped
/// reading) is read on so that its connection can be kept: the end of a complete
/// answer is already on its way. Bounded in bytes too; past either, it is closed.
const DISCARD_WAIT: Duration = Duration::from_millis(100);
const DISCARD_LIMIT: usize = 16 * 1024;

pub(super) struct Http {
    session: Arc<Session>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// One per origin this fetch sent a request to, resolved and checked once.
    clients: Vec<Pinned>,
    /// Where the listing ended up after redirects: the download goes there too.
    base: Option<Url>,
    /// Sent once the upstream asked for them (401), and only to the URL's own host.
    authorized: bool,
}

impl Http {
    pub(super) fn new(session: Arc<Session>) -> Self {
        Self {
            session,
            state: Arc::default(),
        }
    }
}

impl SmartSubtransport for Http {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let mut origin = requested(&self.session, url, action)?;
        let credentials = credentials(&origin);
        let _ = origin.set_username("");
        let _ = origin.set_password(None);
        // refused before any request: a name is checked where it resolves
        if let Some(ip) = host_ip(&origin) {
            self.session
                .check(origin.host_str().unwrap_or_default(), ip)
                .map_err(|e| git_error(&self.session, ErrorKind::BlockedUrl, e.to_string()))?;
        }
        let listing = action == Service::UploadPackLs;
        Ok(Box::new(HttpStream {
            session: self.session.clone(),
            state: self.state.clone(),
            scope: credentials.as_ref().map(|(u, p)| Scope::of(u, p)),
            origin,
            credentials,
            listing,
            body: Vec::new(),
            response: None,
            pending: bytes::Bytes::new(),
            meter: Meter::new(
                self.session.clone(),
                if listing {
                    Phase::Advertisement
                } else {
                    Phase::Transfer
                },
            ),
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

struct HttpStream {
    session: Arc<Session>,
    state: Arc<Mutex<State>>,
    origin: Url,
    credentials: Option<(String, String)>,
    /// The credentials' scope: connections are shared only within it.
    scope: Option<Scope>,
    listing: bool,
    body: Vec<u8>,
    response: Option<reqwest::Response>,
    pending: bytes::Bytes,
    meter: Meter,
}

impl Write for HttpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.response = Some(self.send()?);
        }
        while self.pending.is_empty() {
            let response = self.response.as_mut().expect("sent above");
            let session = self.session.clone();
            let chunk = pool::block_on(&session, bounded(&session, response.chunk()))??
                .map_err(|e| self.session.fail(ErrorKind::Network, describe(&e)));
            match chunk? {
                None => return Ok(0),
                Some(bytes) => {
                    self.meter.read(&bytes)?;
                    self.pending = bytes;
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl Drop for HttpStream {
    /// libgit2 stops reading at the pkt-line that ends what it wanted, which may leave
    /// the end of the body unread (a chunked body's final empty chunk).
    fn drop(&mut self) {
        if let Some(response) = self.response.take() {
            self.discard(response);
        }
    }
}

impl HttpStream {
    /// The request this stream stands for, answered 200; a 401 is answered once with
    /// the URL's credentials.
    fn send(&mut self) -> io::Result<reqwest::Response> {
        loop {
            let response = self.request()?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && self.may_authorize() {
                self.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .authorized = true;
                self.discard(response);
                continue;
            }
            if let Err(e) = self.check_status(status) {
                self.discard(response);
                return Err(e);
            }
            if self.listing {
                let kind = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if kind != ADVERTISEMENT {
                    return Err(self.session.fail(
                        ErrorKind::GitProtocol,
                        "upstream is not a smart HTTP git server",
                    ));
                }
                let mut base = response.url().clone();
                base.set_query(None);
                let path = base.path().trim_end_matches("/info/refs").to_owned();
                base.set_path(&path);
                self.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .base = Some(base);
            }
            return Ok(response);
        }
    }

    /// The first request, then each redirect that is followed, until an answer that is
    /// not one.
    fn request(&self) -> io::Result<reqwest::Response> {
        let (base, authorized) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let base = match (&state.base, self.listing) {
                (Some(base), false) => base.clone(),
                _ => self.origin.clone(),
            };
            (base, state.authorized)
        };
        let path = base.path().trim_end_matches('/').to_owned();
        let mut url = base;
        let mut hop = if self.listing {
            url.set_path(&format!("{path}/info/refs"));
            url.set_query(Some("service=git-upload-pack"));
            Hop {
                url,
                method: Method::GET,
                body: None,
            }
        } else {
            url.set_path(&format!("{path}/git-upload-pack"));
            Hop {
                url,
                method: Method::POST,
                body: Some(self.body.clone()),
            }
        };
        let mut previous = Vec::new();
        loop {
            let response = self.send_hop(&hop, authorized)?;
            let location = response.headers().get(reqwest::header::LOCATION);
            let status = response.status();
            let next = redirect::next(
                &self.session,
                &mut previous,
                &hop,
                status,
                location.map(|l| l.as_bytes()),
            )?;
            match next {
                Some(next) => {
                    self.discard(response);
                    hop = next;
                }
                None => return Ok(response),
            }
        }
    }

    fn send_hop(&self, hop: &Hop, authorized: bool) -> io::Result<reqwest::Response> {
        let client = self.client_for(&hop.url)?;
        let Some(mut request) = client.request(hop.method.clone(), hop.url.clone()) else {
            return Err(self.session.fail(
                ErrorKind::Internal,
                "a request reached a client of another upstream",
            ));
        };
        if !self.listing {
            request = request.header(
                reqwest::header::ACCEPT,
                "application/x-git-upload-pack-result",
            );
        }
        if let Some(body) = &hop.body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-git-upload-pack-request",
                )
                .body(body.clone());
        }
        if let Some((user, pass)) = &self.credentials {
            if authorized && carries_credentials(&self.origin, &hop.url) {
                request = request.basic_auth(user, Some(pass));
            }
        }
        let session = self.session.clone();
        pool::block_on(&session, bounded(&session, client.send(request)))??
            .map_err(|e| self.failed(&e))
    }

    /// Reads what is left of an answer nobody needs, briefly, so that its connection
    /// goes back to the pool rather than being closed; nothing of it reaches libgit2.
    fn discard(&self, mut response: reqwest::Response) {
        if !pool::reusing() || self.session.stop.is_stopped() {
            return;
        }
        let rest = async {
            let mut read = 0;
            loop {
                match response.chunk().await {
                    Ok(Some(bytes)) if read + bytes.len() <= DISCARD_LIMIT => read += bytes.len(),
                    Ok(None) => return true,
                    _ => return false,
                }
            }
        };
        let waited = async { tokio::time::timeout(DISCARD_WAIT, rest).await };
        let ended = pool::block_on(&self.session, bounded(&self.session, waited));
        if matches!(ended, Ok(Ok(Ok(true)))) {
            pool::settle(&self.session);
        }
    }

    /// This fetch's client for `url`'s origin: checked out of the pool the first time
    /// the fetch sends there (the name resolved and checked then), the same one after.
    fn client_for(&self, url: &Url) -> io::Result<Pinned> {
        let known = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.clients.iter().find(|c| c.serves(url)).cloned()
        };
        if let Some(client) = known {
            return Ok(client);
        }
        let session = self.session.clone();
        let checkout = pool::checkout(&session, url, self.scope.clone());
        let client = pool::block_on(&session, bounded(&session, checkout))???;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clients
            .push(client.clone());
        Ok(client)
    }

    fn may_authorize(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.credentials.is_some() && !state.authorized
    }

    fn check_status(&self, status: StatusCode) -> io::Result<()> {
        let (kind, what) = match status.as_u16() {
            200 => return Ok(()),
            401 | 403 => (
                ErrorKind::Auth,
                "authentication required or rejected by upstream",
            ),
            404 | 410 => (ErrorKind::NotFound, "repository not found"),
            300..=399 => (
                ErrorKind::BlockedUrl,
                "upstream redirected, and redirects are not followed here",
            ),
            500..=599 => (ErrorKind::Network, "upstream server error"),
            _ => (ErrorKind::GitProtocol, "unexpected answer from upstream"),
        };
        Err(self
            .session
            .fail(kind, format!("{what} (HTTP {})", status.as_u16())))
    }

    /// A request that got no answer: the session may already know why (a refused
    /// address or redirect).
    fn failed(&self, e: &reqwest::Error) -> io::Error {
        let text = describe(e);
        let kind = if text.contains("certificate") {
            ErrorKind::Auth
        } else {
            ErrorKind::Network
        };
        self.session.fail(kind, text)
    }
}

/// The error with its causes, without the URL (which may name a redirect target).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = match e.url() {
        Some(url) => e.to_string().replace(url.as_str(), "upstream"),
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn credentials(url: &Url) -> Option<(String, String)> {
    if url.username().is_empty() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((decode(url.username()), decode(url.password().unwrap_or(""))))
}
