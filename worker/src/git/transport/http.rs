//! Smart HTTP(S) with our own client: host names resolve through the session, which
//! refuses addresses the policy does not allow, so the address connected to is one it
//! approved; a redirect is followed only to a URL that passes the same policy; every
//! response is read under the session's deadline, stop flag and limits.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use reqwest::StatusCode;
use url::Url;

use super::meter::{Meter, Phase};
use super::session::{bounded, Session};
use super::vetted::{host_ip, vetted_client};
use super::{git_error, requested};
use stasis_shared::domain::ErrorKind;

const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

pub(super) struct Http {
    session: Arc<Session>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    client: Option<reqwest::Client>,
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

    fn client(&self) -> Result<reqwest::Client, git2::Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = &state.client {
            return Ok(client.clone());
        }
        let client = vetted_client(&self.session).map_err(|e| {
            git_error(
                &self.session,
                ErrorKind::Internal,
                format!("HTTP client: {e}"),
            )
        })?;
        state.client = Some(client.clone());
        Ok(client)
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
        // a name is checked where it resolves; an address literal never resolves
        if let Some(ip) = host_ip(&origin) {
            self.session
                .check(origin.host_str().unwrap_or_default(), ip)
                .map_err(|e| git_error(&self.session, ErrorKind::BlockedUrl, e.to_string()))?;
        }
        let listing = action == Service::UploadPackLs;
        Ok(Box::new(HttpStream {
            client: self.client()?,
            session: self.session.clone(),
            state: self.state.clone(),
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
    client: reqwest::Client,
    session: Arc<Session>,
    state: Arc<Mutex<State>>,
    origin: Url,
    credentials: Option<(String, String)>,
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
            let chunk = session
                .block_on(bounded(&session, response.chunk()))??
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
                continue;
            }
            self.check_status(status)?;
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
        let mut url = base.clone();
        let request = if self.listing {
            url.set_path(&format!("{path}/info/refs"));
            url.set_query(Some("service=git-upload-pack"));
            self.client.get(url)
        } else {
            url.set_path(&format!("{path}/git-upload-pack"));
            self.client
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-git-upload-pack-request",
                )
                .header(
                    reqwest::header::ACCEPT,
                    "application/x-git-upload-pack-result",
                )
                .body(self.body.clone())
        };
        // credentials go only to the host they were given for
        let request = match &self.credentials {
            Some((user, pass)) if authorized && base.host() == self.origin.host() => {
                request.basic_auth(user, Some(pass))
            }
            _ => request,
        };
        let session = self.session.clone();
        session
            .block_on(bounded(&session, request.send()))??
            .map_err(|e| self.failed(&e))
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
