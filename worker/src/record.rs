//! How the worker's view of an attempt's end (a fetch report or a fetch error) becomes
//! what the job lifecycle records (`stasis_shared::lifecycle::attempt`).

use std::path::Path;
use std::time::Duration;

use crate::git::fetch::{FetchError, FetchReport};
use crate::git::lfs::LfsReport;
use stasis_shared::domain::ErrorKind;
use stasis_shared::lifecycle::attempt::RunStats;
use stasis_shared::lifecycle::policy::End;

use crate::housekeeping::Housekept;
use crate::owner_text::for_owner;

/// How an attempt ended, as the worker decided.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    Success(&'a FetchReport),
    Retry {
        error: &'a FetchError,
        delay: Duration,
    },
    Failed(&'a FetchError),
    /// Stopped by the worker's shutdown: the job is pending again at once, and the
    /// attempt does not count against `sync.max_attempts`.
    Interrupted(&'a FetchError),
}

const INTERRUPTED: &str = "sync interrupted: the worker shut down; the job was requeued";

impl<'a> Ending<'a> {
    pub fn end(&self) -> End {
        match *self {
            Ending::Success(report) => End::Success {
                unchanged: report.unchanged,
            },
            Ending::Retry { delay, .. } => End::Retry { delay },
            Ending::Failed(error) => End::Failed { kind: error.kind },
            Ending::Interrupted(_) => End::Interrupted,
        }
    }

    /// The error the run, the job and the mirror show, in the owner's words (see
    /// [`for_owner`]; the log keeps the error as raised). An interruption is neither a
    /// success nor a failure of the mirror: it says what happened, with no kind.
    pub fn error(&self, storage_root: &Path) -> (Option<String>, Option<ErrorKind>) {
        match *self {
            Ending::Success(_) => (None, None),
            Ending::Retry { error, .. } | Ending::Failed(error) => (
                Some(for_owner(&error.message, storage_root)),
                Some(error.kind),
            ),
            Ending::Interrupted(_) => (Some(INTERRUPTED.to_owned()), None),
        }
    }

    /// The run row's figures: the fetch's, for a success, and the LFS step and the
    /// housekeeping after it (its error in the owner's words, as [`Self::error`]).
    pub fn stats(
        &self,
        housekept: Housekept,
        lfs: Option<&LfsReport>,
        storage_root: &Path,
    ) -> RunStats {
        let mut stats = RunStats {
            housekeeping: housekept
                .repack
                .map(|(kind, took)| (kind.as_str(), took.as_millis() as i32)),
            size_bytes: housekept.size_bytes.map(|b| b as i64),
            lfs_objects: lfs.map(|l| l.objects as i32),
            lfs_bytes: lfs.map(|l| l.bytes as i64),
            lfs_error: lfs
                .and_then(LfsReport::error_text)
                .map(|text| for_owner(&text, storage_root)),
            ..RunStats::default()
        };
        if let Ending::Success(r) = self {
            stats.refs_created = r.refs_created as i32;
            stats.refs_updated = r.refs_changed() as i32;
            stats.refs_pruned = r.refs_pruned as i32;
            stats.bytes_received = r.bytes_received as i64;
            stats.objects_received = r.objects_received as i32;
            stats.unchanged = r.unchanged;
            stats.list_ms = Some(r.list_time.as_millis() as i32);
            stats.fetch_ms = (!r.unchanged).then_some(r.fetch_time.as_millis() as i32);
            stats.refs_fingerprint = r.fingerprint.clone();
        }
        stats
    }
}
