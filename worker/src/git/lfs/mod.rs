//! Git LFS objects of a mirror: after a fetch that brought commits, the LFS pointers
//! among its new blobs are found, the objects the mirror lacks are asked of the
//! upstream's batch API and downloaded (a few at once) into the mirror in git-lfs's
//! layout, so that a clone of the mirror checks out real content.
//!
//! An ssh upstream names its batch endpoint and the header that authorizes it through
//! `git-lfs-authenticate` over ssh ([`ssh`]), under the fetch's rules (vetted address,
//! confirmed host keys, deploy key).
//!
//! Every request goes through the fetch transports' vetted client: the batch endpoint
//! and each href it returns (which may name another host) pass the upstream address
//! policy, are connected to at an approved address, and redirects are re-vetted.
//! Failures are collected, not raised: the git part of the sync stands either way.

mod batch;
mod download;
pub mod endpoint;
pub mod pointer;
pub mod scan;
pub mod ssh;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use git2::Oid;

use crate::git::ssh_auth::SshAccess;
use crate::git::stop::StopFlag;
use crate::git::transport::{bounded, describe, vetted_client, NetworkPolicy, Session};
use endpoint::Endpoint;
use pointer::Pointer;
use stasis_shared::git::url::{Scheme, UpstreamUrl};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LfsError {
    #[error("the upstream URL has no LFS API (a local path)")]
    NoEndpoint,
    #[error("scanning new objects for LFS pointers: {0}")]
    Scan(String),
    #[error("LFS batch API: {0}")]
    Batch(String),
    #[error("LFS URL refused: {0}")]
    Blocked(String),
    #[error("LFS object {oid} takes {size} bytes, more than lfs.max_object_size ({limit})")]
    ObjectTooLarge { oid: String, size: u64, limit: u64 },
    #[error("{count} LFS objects skipped: the mirror's LFS objects would pass lfs.max_mirror_size ({limit})")]
    MirrorFull { count: usize, limit: u64 },
    #[error("LFS object {oid}: received {got} bytes or more, its pointer says {expected}")]
    SizeMismatch {
        oid: String,
        expected: u64,
        got: u64,
    },
    #[error("LFS object {oid}: the content received does not hash to its oid")]
    HashMismatch { oid: String },
    #[error("LFS download of {oid}: {why}")]
    Download { oid: String, why: String },
    #[error("storing an LFS object: {0}")]
    Disk(String),
    #[error("LFS downloads stopped: lfs.timeout reached, or the sync was stopped")]
    Stopped,
    #[error("LFS over ssh: {0}")]
    HostKeyMismatch(String),
    #[error("LFS over ssh: {0}")]
    Auth(String),
    #[error("LFS over ssh: {0}")]
    Ssh(String),
}

impl LfsError {
    /// A bounded label for `stasis_lfs_failures_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            LfsError::NoEndpoint => "no_endpoint",
            LfsError::Scan(_) | LfsError::Disk(_) => "internal",
            LfsError::Batch(_) => "batch",
            LfsError::Blocked(_) => "blocked_url",
            LfsError::ObjectTooLarge { .. } | LfsError::MirrorFull { .. } => "too_large",
            LfsError::SizeMismatch { .. } | LfsError::HashMismatch { .. } => "corrupt",
            LfsError::Download { .. } => "download",
            LfsError::Stopped => "timeout",
            LfsError::HostKeyMismatch(_) => "host_key_mismatch",
            LfsError::Auth(_) => "auth",
            LfsError::Ssh(_) => "ssh",
        }
    }

    /// The one object this failure is about, if it is about one.
    pub fn oid(&self) -> Option<&str> {
        match self {
            LfsError::ObjectTooLarge { oid, .. }
            | LfsError::SizeMismatch { oid, .. }
            | LfsError::HashMismatch { oid }
            | LfsError::Download { oid, .. } => Some(oid),
            _ => None,
        }
    }
}

/// The limits of one mirror's LFS step.
#[derive(Debug, Clone, Copy)]
pub struct LfsLimits {
    pub max_object_size: u64,
    pub max_mirror_size: u64,
    pub concurrency: usize,
}

impl LfsLimits {
    pub fn from_config(cfg: &stasis_shared::Config) -> Self {
        Self {
            max_object_size: cfg.lfs.max_object_size.as_u64(),
            max_mirror_size: cfg.lfs.max_mirror_size.as_u64(),
            concurrency: cfg.lfs.concurrency,
        }
    }
}

pub struct LfsRequest<'a> {
    /// The bare mirror.
    pub path: &'a Path,
    /// The clone URL with its credentials.
    pub url: &'a str,
    /// The mirror's tips before the fetch, and those it created or moved.
    pub old_tips: &'a [Oid],
    pub new_tips: &'a [Oid],
    /// The fetch created the mirror: every object it holds is new, and pointers are
    /// looked for among them all (when `new_tips` are any) without a walk.
    pub created: bool,
    /// Objects earlier steps could not store, tried again beside the new ones.
    pub remembered: &'a [Pointer],
    pub network: &'a NetworkPolicy,
    /// The deploy key and confirmed host keys of an ssh upstream (unused for others).
    pub ssh: &'a SshAccess,
    pub limits: LfsLimits,
    pub deadline: Instant,
    pub stop: &'a Arc<StopFlag>,
}

/// What the step did: the pointers found among new objects, the objects stored, and
/// every failure (the first names the cause in the run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LfsReport {
    pub pointers: usize,
    pub objects: u32,
    pub bytes: u64,
    pub errors: Vec<LfsError>,
    /// The oids stored by this step.
    pub stored: Vec<String>,
    /// The objects the mirror lacks and this step did not store, with why: what later
    /// syncs try again.
    pub missing: Vec<(Pointer, String)>,
}

impl LfsReport {
    /// The run's `lfs_error`: the first failure, and how many more there were.
    pub fn error_text(&self) -> Option<String> {
        let first = self.errors.first()?;
        Some(match self.errors.len() {
            1 => first.to_string(),
            n => format!("{first} (and {} more LFS failures)", n - 1),
        })
    }
}

/// Downloads the LFS objects that the fetch's new objects point at and the mirror lacks,
/// and the remembered ones it still lacks.
pub async fn mirror_lfs(req: &LfsRequest<'_>) -> LfsReport {
    let mut report = LfsReport::default();
    let (path, old, new, remembered) = (
        req.path.to_owned(),
        req.old_tips.to_vec(),
        req.new_tips.to_vec(),
        req.remembered.to_vec(),
    );
    let (stop, deadline, created) = (req.stop.clone(), req.deadline, req.created);
    let scanned = tokio::task::spawn_blocking(move || {
        let found = if created && !new.is_empty() {
            scan::all_pointers(&path, stop, deadline)
        } else {
            scan::new_pointers(&path, &old, &new, stop, deadline)
        };
        // a failed scan leaves the remembered objects to try
        let (count, mut wanted) = match &found {
            Ok(pointers) => (pointers.len(), pointers.clone()),
            Err(_) => (0, Vec::new()),
        };
        wanted.extend(remembered);
        wanted.sort();
        wanted.dedup_by(|a, b| a.oid == b.oid);
        let stored = scan::stored_size(&path);
        (found.err(), count, scan::missing(&path, wanted), stored)
    })
    .await;
    let (scan_error, found, missing, stored) = match scanned {
        Ok(scanned) => scanned,
        Err(e) => {
            let error = LfsError::Scan(format!("scan thread failed: {e}"));
            report.missing = unstored(req.remembered, &report, &error.to_string());
            report.errors.push(error);
            return report;
        }
    };
    report.errors.extend(scan_error);
    report.pointers = found;
    download_missing(req, missing.clone(), stored, &mut report).await;
    let fallback = report
        .error_text()
        .unwrap_or_else(|| "the LFS step ended before this object was downloaded".to_owned());
    report.missing = unstored(&missing, &report, &fallback);
    report
}

/// Of `wanted`, those the step did not store, each with the failure that names it or
/// else `fallback`.
fn unstored(wanted: &[Pointer], report: &LfsReport, fallback: &str) -> Vec<(Pointer, String)> {
    let stored: std::collections::HashSet<&str> =
        report.stored.iter().map(String::as_str).collect();
    wanted
        .iter()
        .filter(|p| !stored.contains(p.oid.as_str()))
        .map(|p| {
            let why = report
                .errors
                .iter()
                .find(|e| names(e, &p.oid))
                .map_or_else(|| fallback.to_owned(), LfsError::to_string);
            (p.clone(), why)
        })
        .collect()
}

/// Whether a failure is about the object `oid`: its own, or the batch API's answer for it.
fn names(error: &LfsError, oid: &str) -> bool {
    match error {
        LfsError::Batch(message) => message.contains(oid),
        e => e.oid() == Some(oid),
    }
}

async fn download_missing(
    req: &LfsRequest<'_>,
    missing: Vec<Pointer>,
    stored: u64,
    report: &mut LfsReport,
) {
    let wanted = within_limits(missing, stored, req.limits, &mut report.errors);
    if wanted.is_empty() {
        return;
    }
    let session = Session::new(req.network.clone(), req.deadline, req.stop.clone());
    let endpoint = match endpoint(req, &session).await {
        Ok(endpoint) => endpoint,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    let client = match vetted_client(&session) {
        Ok(client) => client,
        Err(e) => {
            report.errors.push(LfsError::Batch(describe(&e)));
            return;
        }
    };
    for chunk in wanted.chunks(batch::BATCH_SIZE) {
        let actions = match batch::download_actions(&client, &session, &endpoint, chunk).await {
            Ok(actions) => actions,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        let results: Vec<(String, Result<u64, LfsError>)> = stream::iter(actions)
            .map(|(pointer, action)| {
                let (client, session) = (&client, &session);
                async move {
                    let result = match action {
                        Ok(action) => {
                            download::fetch_object(client, session, req.path, &pointer, action)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    (pointer.oid, result)
                }
            })
            .buffer_unordered(req.limits.concurrency.max(1))
            .collect()
            .await;
        for (oid, result) in results {
            match result {
                Ok(bytes) => {
                    report.objects += 1;
                    report.bytes += bytes;
                    report.stored.push(oid);
                }
                Err(e) => report.errors.push(e),
            }
        }
        if req.stop.is_stopped() {
            break;
        }
    }
}

/// The batch API: named by `git-lfs-authenticate` over ssh for an ssh upstream (on a
/// blocking thread: libssh2 blocks), derived from the clone URL for others.
async fn endpoint(req: &LfsRequest<'_>, session: &Arc<Session>) -> Result<Endpoint, LfsError> {
    match UpstreamUrl::parse(req.url) {
        Ok(url) if url.scheme() == Scheme::Ssh => {
            let (access, session) = (req.ssh.clone(), session.clone());
            tokio::task::spawn_blocking(move || ssh::authenticate(&url, &access, &session))
                .await
                .unwrap_or_else(|e| Err(LfsError::Ssh(format!("ssh thread failed: {e}"))))
        }
        _ => Endpoint::from_clone_url(req.url),
    }
}

/// The missing objects that fit the per-object limit and what the mirror's limit
/// leaves, smallest first so that a limit skips as few objects as it can.
fn within_limits(
    mut missing: Vec<Pointer>,
    stored: u64,
    limits: LfsLimits,
    errors: &mut Vec<LfsError>,
) -> Vec<Pointer> {
    missing.sort_by_key(|p| p.size);
    let mut room = limits.max_mirror_size.saturating_sub(stored);
    let mut wanted = Vec::new();
    let mut skipped = 0;
    for p in missing {
        if p.size > limits.max_object_size {
            errors.push(LfsError::ObjectTooLarge {
                size: p.size,
                oid: p.oid,
                limit: limits.max_object_size,
            });
        } else if p.size > room {
            skipped += 1;
        } else {
            room -= p.size;
            wanted.push(p);
        }
    }
    if skipped > 0 {
        errors.push(LfsError::MirrorFull {
            count: skipped,
            limit: limits.max_mirror_size,
        });
    }
    wanted
}

/// A response body of at most `cap` bytes, read under the session's deadline and stop.
async fn read_capped(
    session: &Session,
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Vec<u8>, LfsError> {
    let mut body = Vec::new();
    loop {
        let chunk = bounded(session, response.chunk())
            .await
            .map_err(|_| LfsError::Stopped)?
            .map_err(|e| LfsError::Batch(describe(&e)))?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(LfsError::Batch(format!("answer larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_is_a_described_label() {
        let errors = [
            LfsError::NoEndpoint,
            LfsError::Scan(String::new()),
            LfsError::Batch(String::new()),
            LfsError::Blocked(String::new()),
            LfsError::ObjectTooLarge {
                oid: String::new(),
                size: 2,
                limit: 1,
            },
            LfsError::MirrorFull { count: 1, limit: 1 },
            LfsError::SizeMismatch {
                oid: String::new(),
                expected: 1,
                got: 2,
            },
            LfsError::HashMismatch { oid: String::new() },
            LfsError::Download {
                oid: String::new(),
                why: String::new(),
            },
            LfsError::Disk(String::new()),
            LfsError::Stopped,
            LfsError::HostKeyMismatch(String::new()),
            LfsError::Auth(String::new()),
            LfsError::Ssh(String::new()),
        ];
        for error in errors {
            let kind = error.kind();
            assert!(
                stasis_shared::ops::instruments::LFS_FAILURE_KINDS.contains(&kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn limits_skip_large_objects_and_what_the_mirror_has_no_room_for() {
        let p = |n: u8, size| Pointer {
            oid: format!("{n:064x}"),
            size,
        };
        let limits = LfsLimits {
            max_object_size: 100,
            max_mirror_size: 250,
            concurrency: 1,
        };
        let mut errors = Vec::new();
        let wanted = within_limits(
            vec![p(1, 90), p(2, 101), p(3, 80), p(4, 70)],
            50,
            limits,
            &mut errors,
        );
        // 50 stored: 70 and 80 fit in the 200 left, 90 does not, 101 is over the object limit
        assert_eq!(wanted, vec![p(4, 70), p(3, 80)]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(matches!(
            errors[0],
            LfsError::ObjectTooLarge { size: 101, .. }
        ));
        assert!(matches!(
            errors[1],
            LfsError::MirrorFull {
                count: 1,
                limit: 250
            }
        ));
    }
}
