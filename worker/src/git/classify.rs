//! What a failed fetch means for its mirror: the error kind that decides retrying,
//! hard failure and what the owner is told. Our transports record why they refused or
//! cut a connection; libgit2's own errors are read from their code, class and text.

use std::path::Path;

use git2::{ErrorClass, ErrorCode};

use super::stop::{StopFlag, StopReason};
use super::transport::{self, Session};
use stasis_shared::domain::ErrorKind;
use stasis_shared::git::url::redact_text;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct FetchError {
    pub kind: ErrorKind,
    /// Human-readable, with any credential of the URL removed.
    pub message: String,
}

pub(super) fn stopped(reason: StopReason) -> FetchError {
    match reason {
        StopReason::Timeout => FetchError {
            kind: ErrorKind::Timeout,
            message: "sync timed out".into(),
        },
        StopReason::Cancelled => FetchError {
            kind: ErrorKind::Internal,
            message: "sync cancelled: repository lock lost or worker stopping".into(),
        },
    }
}

/// The failure our transport recorded, as the fetch's error.
pub(super) fn refused(session: &Session, stop: &StopFlag, url: &str) -> FetchError {
    if stop.is_stopped() {
        return stopped(stop.reason());
    }
    let failure = session.failure().unwrap_or(transport::Failure {
        kind: ErrorKind::Internal,
        message: "upstream connection refused".into(),
    });
    let message = redact_text(&failure.message, url);
    FetchError {
        kind: failure.kind,
        message: format!("{message} ({})", failure.kind),
    }
}

/// `mirror` is the mirror's directory: an error naming it is about our storage, never
/// about the upstream, whatever its words ("No such file" there is not a missing
/// upstream).
pub(super) fn classify(
    e: &git2::Error,
    stop: &StopFlag,
    url: &str,
    session: &Session,
    mirror: &Path,
) -> FetchError {
    if e.code() == ErrorCode::User || stop.is_stopped() {
        return stopped(stop.reason());
    }
    // our transport knows why it refused or cut a connection
    if session.failure().is_some() {
        return refused(session, stop, url);
    }
    let message = redact_text(e.message(), url);
    let kind = if names_path(&message, mirror) {
        ErrorKind::Disk
    } else {
        kind_of(e.code(), e.class(), &message)
    };
    FetchError {
        kind,
        message: format!("{message} ({kind})"),
    }
}

/// Whether `message` names the mirror's directory, the owner's directory holding it,
/// or a file inside them, as given or as libgit2 reports them (the real path, symlinks
/// resolved).
fn names_path(message: &str, mirror: &Path) -> bool {
    let owner = mirror.parent();
    let real = |dir: Option<&Path>| dir.and_then(|d| std::fs::canonicalize(d).ok());
    let (real_mirror, real_owner) = (real(Some(mirror)), real(owner));
    let named = [
        Some(mirror),
        owner,
        real_mirror.as_deref(),
        real_owner.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(Path::to_str)
    .filter(|p| p.len() > 1)
    .any(|p| message.contains(p));
    named
}

/// What libgit2's smart protocol code says when the upstream's bytes are not the
/// protocol (class `Net` all the same): the upstream answered, wrongly, so this is no
/// network failure.
const PROTOCOL_GARBAGE: &[&str] = &[
    "invalid packet line",
    "invalid empty packet",
    "invalid hex digit in length",
    "bad packet length",
    "unexpected pack file",
    "unexpected packet type",
    "unexpected pkt type",
    "incomplete pack data pkt-line",
    "error parsing",
    "pkt-line",
    "invalid response",
    "remote sent invalid symref",
    "oversized progress message",
    "server doesn't support",
    "protocol error",
    "remote error",
];

/// Classes of libgit2 errors about our own repository: a `NotFound` code there is a
/// missing object, ref or file of the mirror, not a missing upstream.
fn is_local_class(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::Odb
            | ErrorClass::Object
            | ErrorClass::Reference
            | ErrorClass::Index
            | ErrorClass::Filesystem
            | ErrorClass::Config
            | ErrorClass::Tree
            | ErrorClass::Indexer
    )
}

/// Whether `lower` holds `code` as a number of its own: object ids and pack names are
/// hex and hold "401" or "404" by chance.
fn has_status(lower: &str, code: &str) -> bool {
    lower.match_indices(code).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// The kind of a libgit2 error, from its code and class first and its (redacted)
/// message where those are too coarse: libgit2 reports HTTP statuses, most server
/// refusals and protocol garbage only as text.
pub(super) fn kind_of(code: ErrorCode, class: ErrorClass, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let status = |codes: &[&str]| codes.iter().any(|c| has_status(&lower, c));
    let local = is_local_class(class);
    // the upstream's words; an `Os` error is ours ("Permission denied" on a file)
    let upstream = !local && class != ErrorClass::Os;
    if code == ErrorCode::Auth
        || code == ErrorCode::Certificate
        || (!local && status(&["401", "403"]))
        || (upstream && has(&["authentication", "permission denied", "certificate"]))
    {
        ErrorKind::Auth
    } else if !local
        && (code == ErrorCode::NotFound
            || status(&["404", "410"])
            || has(&[
                "not found",
                "not exported",
                "does not appear to be a git repository",
                "could not find repository",
            ]))
    {
        ErrorKind::NotFound
    } else if has(&["timed out", "timeout"]) {
        ErrorKind::Timeout
    } else if class == ErrorClass::Net && has(&["unsupported url protocol", "invalid url"]) {
        ErrorKind::BlockedUrl
    } else if !has(&["remote"])
        && has(&[
            "no space left on device",
            "disk quota exceeded",
            "read-only file system",
        ])
    {
        ErrorKind::Disk
    } else if matches!(class, ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh)
        && has(PROTOCOL_GARBAGE)
    {
        ErrorKind::GitProtocol
    } else {
        match class {
            ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Ssl => {
                ErrorKind::Network
            }
            ErrorClass::Os => {
                if has(&["no such file"]) {
                    // a local upstream path (`file://`) that is not there ("failed to
                    // resolve path …"); the mirror's own paths were told apart above
                    ErrorKind::NotFound
                } else if has(&[
                    "connect",
                    "resolve",
                    "network",
                    "connection",
                    "host",
                    "socket",
                ]) {
                    ErrorKind::Network
                } else {
                    ErrorKind::Disk
                }
            }
            ErrorClass::Odb
            | ErrorClass::Filesystem
            | ErrorClass::Index
            | ErrorClass::Reference
            | ErrorClass::Repository
            | ErrorClass::Config
            | ErrorClass::Object
            | ErrorClass::Tree => ErrorKind::Disk,
            _ => ErrorKind::GitProtocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_gives_its_kind() {
        use ErrorClass as C;
        use ErrorCode as E;
        for (code, class, message, kind) in [
            (E::Auth, C::Http, "anything", ErrorKind::Auth),
            (E::Certificate, C::Ssl, "anything", ErrorKind::Auth),
            (
                E::GenericError,
                C::Http,
                "unexpected HTTP status code: 401",
                ErrorKind::Auth,
            ),
            (
                E::GenericError,
                C::Http,
                "unexpected http status code: 403",
                ErrorKind::Auth,
            ),
            (
                E::GenericError,
                C::Ssh,
                "Permission denied (publickey)",
                ErrorKind::Auth,
            ),
            (
                E::GenericError,
                C::Ssl,
                "the SSL certificate is invalid",
                ErrorKind::Auth,
            ),
            (E::NotFound, C::Repository, "anything", ErrorKind::NotFound),
            (
                E::GenericError,
                C::Http,
                "unexpected HTTP status code: 404",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Net,
                "remote: repository not exported",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Os,
                "could not find repository at '/x'",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Os,
                "No such file or directory",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Net,
                "does not appear to be a git repository",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Net,
                "connection timed out",
                ErrorKind::Timeout,
            ),
            (E::GenericError, C::Os, "read timeout", ErrorKind::Timeout),
            (
                E::GenericError,
                C::Net,
                "unsupported URL protocol",
                ErrorKind::BlockedUrl,
            ),
            (
                E::GenericError,
                C::Net,
                "invalid url",
                ErrorKind::BlockedUrl,
            ),
            (E::GenericError, C::Net, "early EOF", ErrorKind::Network),
            (E::GenericError, C::Http, "server error", ErrorKind::Network),
            (
                E::GenericError,
                C::Ssh,
                "session closed",
                ErrorKind::Network,
            ),
            (
                E::GenericError,
                C::Ssl,
                "handshake failed",
                ErrorKind::Network,
            ),
            (
                E::GenericError,
                C::Os,
                "failed to connect to host",
                ErrorKind::Network,
            ),
            (
                E::GenericError,
                C::Os,
                "failed to resolve address",
                ErrorKind::Network,
            ),
            (
                E::GenericError,
                C::Os,
                "failed to resolve path '/nonexistent/up.git': No such file or directory",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Os,
                "disk quota exceeded",
                ErrorKind::Disk,
            ),
            (E::GenericError, C::Odb, "object missing", ErrorKind::Disk),
            (
                E::GenericError,
                C::Filesystem,
                "cannot write",
                ErrorKind::Disk,
            ),
            (E::GenericError, C::Index, "index corrupt", ErrorKind::Disk),
            (
                E::GenericError,
                C::Reference,
                "cannot lock ref",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Repository,
                "bad config",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Indexer,
                "incorrect pack header",
                ErrorKind::GitProtocol,
            ),
            (
                E::GenericError,
                C::Invalid,
                "unexpected pkt-line",
                ErrorKind::GitProtocol,
            ),
            // garbage where pkt-lines belong: the upstream answered, wrongly
            (
                E::GenericError,
                C::Net,
                "invalid hex digit in length: '\u{1}zq\u{7f}'",
                ErrorKind::GitProtocol,
            ),
            (E::GenericError, C::Net, "bad packet length", ErrorKind::GitProtocol),
            (E::GenericError, C::Net, "invalid packet line", ErrorKind::GitProtocol),
            (E::GenericError, C::Net, "Invalid empty packet", ErrorKind::GitProtocol),
            (E::GenericError, C::Net, "unexpected pkt type", ErrorKind::GitProtocol),
            (
                E::GenericError,
                C::Net,
                "error parsing REF pkt-line",
                ErrorKind::GitProtocol,
            ),
            (E::GenericError, C::Net, "invalid response", ErrorKind::GitProtocol),
            (
                E::GenericError,
                C::Net,
                "remote error: upload-pack: not our ref 1a2b",
                ErrorKind::GitProtocol,
            ),
            (
                E::GenericError,
                C::Net,
                "server doesn't support side-band",
                ErrorKind::GitProtocol,
            ),
            (E::GenericError, C::Zlib, "invalid stored block lengths", ErrorKind::GitProtocol),
            // cut connections stay network failures
            (
                E::GenericError,
                C::Net,
                "could not read from remote repository",
                ErrorKind::Network,
            ),
            (
                E::GenericError,
                C::Net,
                "remote: fatal: No space left on device",
                ErrorKind::Network,
            ),
            // our storage failing, whatever hex or words its paths hold
            (
                E::GenericError,
                C::Os,
                "cannot extend packfile '/srv/mirrors/alice/x.git/objects/pack/pack_git2_4041ab': No space left on device",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Indexer,
                "failed to write: No space left on device",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Os,
                "failed to make directory '/srv/mirrors/alice': Permission denied",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Os,
                "failed to write file '/srv/m/x.git/packed-refs.lock': Read-only file system",
                ErrorKind::Disk,
            ),
            (
                E::NotFound,
                C::Odb,
                "object not found - no match for id (403f1e2d)",
                ErrorKind::Disk,
            ),
            (
                E::NotFound,
                C::Reference,
                "reference 'refs/heads/main' not found",
                ErrorKind::Disk,
            ),
            (
                E::GenericError,
                C::Indexer,
                "duplicate object 4013cafe found in pack",
                ErrorKind::GitProtocol,
            ),
            (
                E::GenericError,
                C::Http,
                "unexpected http status code: 410",
                ErrorKind::NotFound,
            ),
            (
                E::GenericError,
                C::Net,
                "remote error: access denied or repository not exported: /x.git",
                ErrorKind::NotFound,
            ),
        ] {
            assert_eq!(
                kind_of(code, class, message),
                kind,
                "{code:?} {class:?} {message}"
            );
        }
    }

    #[test]
    fn an_error_naming_the_mirror_is_about_storage() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("alice").join("x.git");
        std::fs::create_dir_all(&mirror).unwrap();
        let real = std::fs::canonicalize(&mirror).unwrap();
        for shown in [&mirror, &real] {
            let message = format!("failed to open '{}/HEAD': No such file", shown.display());
            assert!(names_path(&message, &mirror), "{message}");
        }
        let owner = format!(
            "failed to make directory '{}': Not a directory",
            dir.path().join("alice").display()
        );
        assert!(names_path(&owner, &mirror), "{owner}");
        assert!(!names_path(
            "could not find repository at '/srv/upstream/x.git'",
            &mirror
        ));
    }
}
