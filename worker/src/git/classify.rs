//! What a failed fetch means for its mirror: the error kind that decides retrying,
//! hard failure and what the owner is told. Our transports record why they refused or
//! cut a connection; libgit2's own errors are read from their code, class and text.

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

pub(super) fn classify(
    e: &git2::Error,
    stop: &StopFlag,
    url: &str,
    session: &Session,
) -> FetchError {
    if e.code() == ErrorCode::User || stop.is_stopped() {
        return stopped(stop.reason());
    }
    // our transport knows why it refused or cut a connection
    if session.failure().is_some() {
        return refused(session, stop, url);
    }
    let message = redact_text(e.message(), url);
    let kind = kind_of(e.code(), e.class(), &message);
    FetchError {
        kind,
        message: format!("{message} ({kind})"),
    }
}

/// The kind of a libgit2 error, from its code and class first and its (redacted)
/// message where those are too coarse: libgit2 reports HTTP statuses and most server
/// refusals only as text.
pub(super) fn kind_of(code: ErrorCode, class: ErrorClass, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if code == ErrorCode::Auth
        || code == ErrorCode::Certificate
        || has(&[
            "401",
            "403",
            "authentication",
            "permission denied",
            "certificate",
        ])
    {
        ErrorKind::Auth
    } else if code == ErrorCode::NotFound
        || has(&[
            "404",
            "not found",
            "not exported",
            "does not appear to be a git repository",
            "could not find repository",
            "no such file",
        ])
    {
        ErrorKind::NotFound
    } else if has(&["timed out", "timeout"]) {
        ErrorKind::Timeout
    } else if class == ErrorClass::Net && has(&["unsupported url protocol", "invalid url"]) {
        ErrorKind::BlockedUrl
    } else {
        match class {
            ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Ssl => {
                ErrorKind::Network
            }
            ErrorClass::Os => {
                if has(&["connect", "resolve", "network", "connection", "host"]) {
                    ErrorKind::Network
                } else {
                    ErrorKind::Disk
                }
            }
            ErrorClass::Odb
            | ErrorClass::Filesystem
            | ErrorClass::Index
            | ErrorClass::Reference
            | ErrorClass::Repository => ErrorKind::Disk,
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
        ] {
            assert_eq!(
                kind_of(code, class, message),
                kind,
                "{code:?} {class:?} {message}"
            );
        }
    }
}
