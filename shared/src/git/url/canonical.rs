//! The one parse of an upstream. The raw text is refused unless every parser a fetch
//! meets reads the same host from it, and what is stored and fetched is re-serialized
//! from the parsed parts, never the raw input.

use std::fmt;

use url::{Host, Url};

use super::{parts, UrlError, MASK};

/// Longest upstream accepted, in bytes, checked before anything is parsed.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Git,
    Ssh,
    /// A local path or `file://` URL.
    Local,
}

impl Scheme {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "git" => Scheme::Git,
            "ssh" => Scheme::Ssh,
            "file" => Scheme::Local,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Git => "git",
            Scheme::Ssh => "ssh",
            Scheme::Local => "file",
        }
    }

    pub fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https => Some(443),
            Scheme::Git => Some(9418),
            Scheme::Ssh => Some(22),
            Scheme::Local => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `scheme://…`, `file://` included
    Url,
    /// `user@host:path`
    Scp,
    /// `/srv/git/x`, `./x`
    Path,
}

/// An upstream in its canonical form. `Debug` masks credentials; [`Self::as_str`]
/// does not.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    canonical: String,
    scheme: Scheme,
    form: Form,
    /// As serialized (percent-escaped); empty when there is none.
    user: String,
    password: Option<String>,
    host: Option<Host<String>>,
    /// Only when not the scheme's default.
    port: Option<u16>,
    path: String,
}

impl UpstreamUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(UrlError::Empty);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Whitespace);
        }
        if raw.contains('\\') {
            return Err(UrlError::Backslash);
        }
        if raw.contains('#') {
            return Err(UrlError::Fragment);
        }
        if raw.contains('?') {
            return Err(UrlError::Query);
        }
        // git's own rule: `scheme://` is a URL, a `:` before any `/` is scp-like ssh,
        // anything else a path
        if let Some((scheme, rest)) = raw.split_once("://").filter(|(s, _)| is_scheme(s)) {
            return Self::from_url_form(scheme, rest);
        }
        if raw.starts_with('/') || raw.starts_with("./") || raw.starts_with("../") {
            return Ok(Self::new(Scheme::Local, Form::Path, None, raw.to_owned()));
        }
        match (raw.find(':'), raw.find('/')) {
            (Some(colon), slash) if slash.is_none_or(|s| colon < s) => {
                let (user, host, path) = parts::scp(raw)?;
                let mut url = Self::new(Scheme::Ssh, Form::Scp, Some(host), path);
                url.user = user;
                url.finish();
                Ok(url)
            }
            _ => Err(UrlError::Malformed),
        }
    }

    fn new(scheme: Scheme, form: Form, host: Option<Host<String>>, path: String) -> Self {
        let mut url = Self {
            canonical: String::new(),
            scheme,
            form,
            user: String::new(),
            password: None,
            host,
            port: None,
            path,
        };
        url.finish();
        url
    }

    fn from_url_form(scheme: &str, rest: &str) -> Result<Self, UrlError> {
        let name = scheme.to_ascii_lowercase();
        let scheme = Scheme::from_name(&name).ok_or(UrlError::Scheme(name))?;
        if scheme == Scheme::Local {
            return Self::from_file_url(rest);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let auth = parts::authority(authority)?;
        parts::url_path(path)?;
        // git:// has no authentication: user info there only serves to confuse parsers
        if scheme == Scheme::Git && !auth.user.is_empty() {
            return Err(UrlError::BadUserinfo);
        }
        let mut url = Self::new(scheme, Form::Url, Some(auth.host), path.to_owned());
        url.user = auth.user;
        url.password = auth.password;
        url.port = auth.port.filter(|p| Some(*p) != scheme.default_port());
        url.finish();
        // The url crate must read every part as written; it also resolves dot segments.
        let parsed = Url::parse(&url.canonical).map_err(|_| UrlError::Malformed)?;
        if parsed.host_str() != url.host.as_ref().map(|h| h.to_string()).as_deref() {
            return Err(UrlError::BadHost);
        }
        if parsed.username() != url.user || parsed.password() != url.password.as_deref() {
            return Err(UrlError::BadUserinfo);
        }
        if parsed.port().is_some_and(|p| Some(p) != url.port) {
            return Err(UrlError::BadPort);
        }
        url.path = parsed.path().to_owned();
        url.finish();
        if url.canonical != parsed.as_str() {
            return Err(UrlError::Malformed);
        }
        Ok(url)
    }

    fn from_file_url(rest: &str) -> Result<Self, UrlError> {
        let parsed = Url::parse(&format!("file://{rest}")).map_err(|_| UrlError::Malformed)?;
        if parsed.host().is_some() || !parsed.username().is_empty() {
            return Err(UrlError::BadHost);
        }
        let url = Self::new(Scheme::Local, Form::Url, None, parsed.path().to_owned());
        if url.canonical != parsed.as_str() {
            return Err(UrlError::Malformed);
        }
        Ok(url)
    }

    fn finish(&mut self) {
        self.canonical = self.assemble(self.password.as_deref(), &self.user);
    }

    fn assemble(&self, password: Option<&str>, user: &str) -> String {
        let host = self
            .host
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let userinfo = match (user, password) {
            ("", _) => String::new(),
            (user, Some(pw)) => format!("{user}:{pw}@"),
            (user, None) => format!("{user}@"),
        };
        match self.form {
            Form::Path => self.path.clone(),
            Form::Scp => format!("{userinfo}{host}:{}", self.path),
            Form::Url => {
                let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
                let scheme = self.scheme.as_str();
                format!("{scheme}://{userinfo}{host}{port}{}", self.path)
            }
        }
    }

    /// The canonical form, credentials included: what is stored and fetched.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `None` for local paths and `file://` URLs.
    pub fn host(&self) -> Option<&Host<String>> {
        self.host.as_ref()
    }

    /// The port a fetch connects to: explicit, or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port.or(self.scheme.default_port())
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Percent-escaped as in [`Self::as_str`]; empty when there is none.
    pub fn username(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn is_scp_like(&self) -> bool {
        self.form == Form::Scp
    }

    /// Whether the user name is itself a secret: an http(s) token user (`TOKEN@host`).
    fn user_is_secret(&self) -> bool {
        matches!(self.scheme, Scheme::Http | Scheme::Https)
            && self.password.is_none()
            && !self.user.is_empty()
    }

    /// Whether a password or token is present; an ssh user name (`git@`) is not one.
    pub fn has_secret(&self) -> bool {
        self.password.is_some() || self.user_is_secret()
    }

    /// The URL to store and show, and the user info (`user:password` or a token user
    /// name, percent-escaped) to seal. Without secrets it comes back unchanged.
    pub fn split_credentials(&self) -> (UpstreamUrl, Option<String>) {
        if !self.has_secret() {
            return (self.clone(), None);
        }
        let userinfo = match &self.password {
            Some(pw) => format!("{}:{pw}", self.user),
            None => self.user.clone(),
        };
        let mut clean = self.clone();
        clean.user.clear();
        clean.password = None;
        clean.finish();
        (clean, Some(userinfo))
    }

    /// The canonical form with secrets replaced by `***`, for logs and answers.
    pub fn redacted(&self) -> String {
        let password = self.password.as_ref().map(|_| MASK);
        let user = if self.user_is_secret() {
            MASK
        } else {
            &self.user
        };
        self.assemble(password, user)
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UpstreamUrl")
            .field(&self.redacted())
            .finish()
    }
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}
