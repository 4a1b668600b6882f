//! The LFS API of an ssh upstream, found as git-lfs finds it (`docs/api/authentication.md`
//! in git-lfs): `git-lfs-authenticate <path> download` run over an ssh session, which
//! answers the batch API's URL (`href`) and the headers its requests carry (`header`,
//! usually `Authorization`). The session is the fetch's in all that matters: the
//! address the policy approved, the host key checked against the confirmed ones before
//! anything is sent, the mirror's deploy key from memory. What the command may print
//! and how long it may take are bounded.
//!
//! Blocking (libssh2): run on a blocking thread.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::endpoint::{with_lfs_path, Endpoint};
use super::LfsError;
use crate::git::ssh_auth::{host_key_refusal, SshAccess};
use crate::git::transport::{ssh_address, Session};
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::UpstreamUrl;
use stasis_shared::ssh::fingerprint_of_blob;

/// The whole exchange (connect, handshake, login, command) within this, or less when the
/// LFS step has less time left.
pub const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer is an URL and a few headers; anything longer is not one.
const MAX_ANSWER: usize = 64 << 10;
/// What of the command's error output is read, and shown (first line, shortened).
const MAX_STDERR: usize = 4 << 10;
const SHOWN_STDERR: usize = 200;

/// `expires_in` and `expires_at` are not read: the header is used at once, within the
/// sync that asked for it.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    href: Option<String>,
    #[serde(default)]
    header: HashMap<String, String>,
}

/// The batch API's endpoint of the ssh upstream `url`, and the headers that authorize
/// requests to it.
pub fn authenticate(
    url: &UpstreamUrl,
    access: &SshAccess,
    session: &Session,
) -> Result<Endpoint, LfsError> {
    let addr = ssh_address(url, session).map_err(|e| match session.failure() {
        Some(f) if f.kind == ErrorKind::BlockedUrl => LfsError::Blocked(f.message),
        _ => LfsError::Ssh(e.to_string()),
    })?;
    let clock = Clock {
        session,
        until: Instant::now() + AUTHENTICATE_TIMEOUT,
    };
    let tcp = TcpStream::connect_timeout(&addr, clock.left()?)
        .map_err(|e| LfsError::Ssh(format!("could not connect to {addr}: {e}")))?;
    let mut ssh = ssh2::Session::new().map_err(|e| clock.failed("starting ssh", &e))?;
    ssh.set_tcp_stream(tcp);
    let arm = |ssh: &ssh2::Session| clock.arm(ssh);
    arm(&ssh)?;
    ssh.handshake()
        .map_err(|e| clock.failed(&format!("ssh handshake with {addr}"), &e))?;
    let shown = ssh
        .host_key()
        .map(|(blob, _)| fingerprint_of_blob(blob))
        .ok_or_else(|| LfsError::HostKeyMismatch("the upstream showed no host key".into()))?;
    if let Some(why) = host_key_refusal(&shown, &access.host_keys) {
        return Err(LfsError::HostKeyMismatch(why));
    }

    let key = access.key.as_ref().ok_or_else(|| {
        LfsError::Auth("this mirror has no deploy key to log in with over ssh".into())
    })?;
    let user = match url.username() {
        "" => "git",
        user => user,
    };
    arm(&ssh)?;
    let refused = ssh
        .userauth_pubkey_memory(user, Some(&key.public), &key.private, None)
        .is_err()
        || !ssh.authenticated();
    if refused {
        return Err(LfsError::Auth(format!(
            "the upstream refused the deploy key {} for user `{user}`",
            key.fingerprint
        )));
    }

    arm(&ssh)?;
    let mut channel = ssh
        .channel_session()
        .map_err(|e| clock.failed("opening an ssh channel", &e))?;
    let command = command(url);
    channel
        .exec(&command)
        .map_err(|e| clock.failed("running git-lfs-authenticate", &e))?;
    let stdout = read_capped(&ssh, &mut channel, &clock, MAX_ANSWER)?;
    let stderr = read_capped(&ssh, &mut channel.stderr(), &clock, MAX_STDERR).unwrap_or_default();
    arm(&ssh)?;
    let _ = channel.wait_close();
    let status = channel.exit_status().unwrap_or(-1);
    let _ = ssh.disconnect(None, "done", None);
    if status != 0 {
        return Err(LfsError::Ssh(format!(
            "`{command}` exited with status {status}: {}",
            first_line(&stderr)
        )));
    }
    endpoint(url, &stdout)
}

/// The bound of one exchange: [`AUTHENTICATE_TIMEOUT`], the LFS step's deadline and
/// its stop flag, whichever comes first.
struct Clock<'a> {
    session: &'a Session,
    until: Instant,
}

impl Clock<'_> {
    /// The time left, or why there is none.
    fn left(&self) -> Result<Duration, LfsError> {
        let until = self.until.min(self.session.deadline);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || self.session.stop.is_stopped() {
            return Err(self.late());
        }
        Ok(left)
    }

    /// libssh2's next blocking call gives up when the time left has passed.
    fn arm(&self, ssh: &ssh2::Session) -> Result<(), LfsError> {
        let ms = self.left()?.as_millis().clamp(1, u32::MAX as u128);
        ssh.set_timeout(ms as u32);
        Ok(())
    }

    /// The step's own end (`lfs.timeout`, a stop), or this exchange's.
    fn late(&self) -> LfsError {
        if self.session.stop.is_stopped() || Instant::now() >= self.session.deadline {
            return LfsError::Stopped;
        }
        LfsError::Ssh(format!(
            "git-lfs-authenticate did not answer within {} s",
            AUTHENTICATE_TIMEOUT.as_secs()
        ))
    }

    fn failed(&self, what: &str, e: &ssh2::Error) -> LfsError {
        // LIBSSH2_ERROR_TIMEOUT
        if e.code() == ssh2::ErrorCode::Session(-9) {
            return self.late();
        }
        LfsError::Ssh(format!("{what}: {}", e.message()))
    }
}

/// Everything `stream` gives until its end, refusing more than `cap` bytes.
fn read_capped(
    ssh: &ssh2::Session,
    stream: &mut impl Read,
    clock: &Clock<'_>,
    cap: usize,
) -> Result<Vec<u8>, LfsError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        clock.arm(ssh)?;
        let n = stream.read(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                clock.late()
            } else {
                LfsError::Ssh(format!("reading git-lfs-authenticate's answer: {e}"))
            }
        })?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > cap {
            return Err(LfsError::Ssh(format!(
                "git-lfs-authenticate answered more than {cap} bytes"
            )));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// `git-lfs-authenticate <path> download`, the path as the URL writes it (git-lfs sends
/// `/group/repo.git` for `ssh://host/group/repo.git` and `group/repo.git` for
/// `host:group/repo.git`), quoted for the remote shell when it needs to be.
fn command(url: &UpstreamUrl) -> String {
    let path = if url.is_scp_like() {
        url.path().to_owned()
    } else {
        percent_encoding::percent_decode_str(url.path())
            .decode_utf8_lossy()
            .into_owned()
    };
    let plain = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-~+@:,".contains(&b));
    let path = if plain {
        path
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    };
    format!("git-lfs-authenticate {path} download")
}

/// The command's answer as an endpoint: its `href` (git-lfs's fallback, the https URL
/// of the same host and path, when it has none) and its headers, kept sensitive. The
/// href is vetted like every LFS URL before a request goes to it.
fn endpoint(url: &UpstreamUrl, stdout: &[u8]) -> Result<Endpoint, LfsError> {
    // the error's position only: serde's text could quote the header it did not expect
    let answer: Answer = serde_json::from_slice(stdout).map_err(|e| {
        LfsError::Ssh(format!(
            "git-lfs-authenticate's answer is not JSON like {{\"href\", \"header\"}} \
             (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let base = match answer.href {
        Some(href) => {
            let mut base = Url::parse(&href).map_err(|_| {
                LfsError::Ssh("git-lfs-authenticate's href is not a URL".to_owned())
            })?;
            let path = base.path().trim_end_matches('/').to_owned();
            base.set_path(&path);
            base
        }
        None => {
            let host = url
                .host()
                .map(ToString::to_string)
                .ok_or(LfsError::NoEndpoint)?;
            let path = url.path().trim_start_matches('/');
            let base =
                Url::parse(&format!("https://{host}/{path}")).map_err(|_| LfsError::NoEndpoint)?;
            with_lfs_path(base)
        }
    };
    let mut header = HeaderMap::new();
    for (name, value) in answer.header {
        let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(LfsError::Ssh(
                "git-lfs-authenticate answered a header that is not valid".into(),
            ));
        };
        value.set_sensitive(true);
        header.insert(name, value);
    }
    Ok(Endpoint {
        url: base,
        credentials: None,
        header,
    })
}

/// The first line of what the command wrote to its error output, printable and short.
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let shown: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(SHOWN_STDERR)
        .collect();
    if shown.is_empty() {
        "no message".to_owned()
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> UpstreamUrl {
        UpstreamUrl::parse(raw).unwrap()
    }

    #[test]
    fn the_command_names_the_path_as_git_lfs_does() {
        assert_eq!(
            command(&url("ssh://git@example.com/group/repo.git")),
            "git-lfs-authenticate /group/repo.git download"
        );
        assert_eq!(
            command(&url("git@example.com:group/repo.git")),
            "git-lfs-authenticate group/repo.git download"
        );
        assert_eq!(
            command(&url("ssh://git@example.com/a%20b/it's.git")),
            r"git-lfs-authenticate '/a b/it'\''s.git' download"
        );
    }

    #[test]
    fn the_answer_gives_the_endpoint_and_its_headers() {
        let up = url("ssh://git@example.com:2222/group/repo.git");
        let answer = br#"{"href": "https://lfs.example.com/group/repo.git/info/lfs/",
            "header": {"Authorization": "RemoteAuth s3cret"}, "expires_in": 3600}"#;
        let e = endpoint(&up, answer).unwrap();
        assert_eq!(
            e.batch_url().as_str(),
            "https://lfs.example.com/group/repo.git/info/lfs/objects/batch"
        );
        assert_eq!(e.header["authorization"], "RemoteAuth s3cret");
        assert!(!format!("{e:?}").contains("s3cret"));

        // no href: the https URL of the same host and path
        let e = endpoint(&up, br#"{"header": {}}"#).unwrap();
        assert_eq!(
            e.url.as_str(),
            "https://example.com/group/repo.git/info/lfs"
        );

        // a malformed answer is refused without quoting it
        let Err(LfsError::Ssh(why)) = endpoint(&up, br#"{"header": ["RemoteAuth s3cret"]}"#) else {
            panic!("a list of headers is not an answer");
        };
        assert!(!why.contains("s3cret"), "{why}");
        assert!(endpoint(&up, br#"{"header": {"Authorization": "a\nb"}}"#).is_err());
    }

    #[test]
    fn the_error_output_is_shown_short_and_printable() {
        assert_eq!(
            first_line(b"\n fatal: no\x1b[31m such repo\nmore"),
            " fatal: no[31m such repo"
        );
        assert_eq!(first_line(b""), "no message");
        assert_eq!(first_line(&[b'x'; 500]).len(), SHOWN_STDERR);
    }
}
