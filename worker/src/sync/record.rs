//! How the worker's view of an attempt (a fetch report or a fetch error, and whether its
//! shutdown stopped it) becomes what the job lifecycle records: the outcome the policy
//! decides on (`stasis_shared::domain::lifecycle::policy::decide`, the one place that decides
//! retry or failure), the error the run, job and mirror show, and the run's figures.

use std::path::Path;

use crate::git::fetch::{FetchError, FetchReport};
use crate::git::lfs::LfsReport;
use stasis_shared::domain::lifecycle::attempt::RunStats;
use stasis_shared::domain::lifecycle::policy::Outcome;
use stasis_shared::domain::ErrorKind;

use crate::sync::housekeeping::Housekept;
use crate::sync::owner_text::for_owner;

const INTERRUPTED: &str = "sync interrupted: the worker shut down; the job was requeued";

/// An attempt as the worker saw it end.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub fetched: &'a Result<FetchReport, FetchError>,
    /// Stopped by the worker's shutdown.
    pub interrupted: bool,
}

impl<'a> Observed<'a> {
    pub fn outcome(&self) -> Outcome {
        match self.fetched {
            Ok(report) => Outcome::Success {
                unchanged: report.unchanged,
            },
            Err(_) if self.interrupted => Outcome::Interrupted,
            Err(error) => Outcome::Failure { kind: error.kind },
        }
    }

    /// The error the run, the job and the mirror show, in the owner's words (see
    /// [`for_owner`]; the log keeps the error as raised). An interruption is neither a
    /// success nor a failure of the mirror: it says what happened, with no kind.
    pub fn error(&self, storage_root: &Path) -> (Option<String>, Option<ErrorKind>) {
        match self.fetched {
            Ok(_) => (None, None),
            Err(_) if self.interrupted => (Some(INTERRUPTED.to_owned()), None),
            Err(error) => (
                Some(for_owner(&error.message, storage_root)),
                Some(error.kind),
            ),
        }
    }

    /// The run row's figures: the fetch's, for a success, and the LFS step and the
    /// housekeeping after it (its error in the owner's words, as [`Self::error`]).
    /// `housekept` is `None` while a pass still runs: its figures come later.
    pub fn stats(
        &self,
        housekept: Option<Housekept>,
        lfs: Option<&LfsReport>,
        storage_root: &Path,
    ) -> RunStats {
        let housekeeping_after = housekept.is_none();
        let housekept = housekept.unwrap_or_default();
        let mut stats = RunStats {
            housekeeping_after,
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
        if let Ok(r) = self.fetched {
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
