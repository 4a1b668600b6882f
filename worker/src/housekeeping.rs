//! Housekeeping after a sync that wrote: run while the sync still holds the repository's
//! lock and its permit (repacking is the heaviest git work a worker does), and never a
//! reason for the sync to fail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::git::fetch::{FetchReport, StopFlag};
use crate::git::housekeeping::{housekeep, Policy, RepackKind};
use crate::git::storage::disk_size;
use stasis_shared::Config;
use tracing::{info_span, warn, Instrument};

/// What a sync's housekeeping did, for its run row and the mirror's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekept {
    /// The repack that succeeded, and how long it took.
    pub repack: Option<(RepackKind, Duration)>,
    /// The mirror's objects on disk afterwards; `None` when nothing was written.
    pub size_bytes: Option<u64>,
}

pub fn policy(cfg: &Config) -> Policy {
    let h = &cfg.housekeeping;
    Policy {
        full_repack_interval: h.full_repack_interval,
        full_repack_every: h.full_repack_every,
        prune_grace: h.prune_grace,
        timeout: h.timeout,
    }
}

/// The housekeeping a successful fetch calls for. An unchanged sync does nothing at all:
/// that is the path almost every sync takes.
pub async fn after_sync(
    cfg: &Config,
    path: &Path,
    report: &FetchReport,
    stop: &Arc<StopFlag>,
) -> Housekept {
    let changed = report.refs_changed() + report.refs_pruned > 0;
    if report.unchanged || !(changed || report.objects_received > 0) {
        return Housekept::default();
    }
    let mut done = Housekept::default();
    let policy = policy(cfg);
    let due = policy.due(path, report.objects_received > 0, changed);
    if let Some(kind) = due.filter(|_| cfg.housekeeping.enabled) {
        let span = info_span!("housekeeping", kind = kind.as_str());
        let began = Instant::now();
        let (dir, stop) = (path.to_owned(), stop.clone());
        let result = tokio::task::spawn_blocking(move || housekeep(&dir, kind, &policy, &stop))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|e| Err(format!("housekeeping thread failed: {e}")));
        let took = began.elapsed();
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics::counter!("stasis_housekeeping_runs_total", "kind" => kind.as_str(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("stasis_housekeeping_duration_seconds", "kind" => kind.as_str())
            .record(took.as_secs_f64());
        match result {
            Ok(()) => done.repack = Some((kind, took)),
            // the fetched refs stand; the next sync that writes tries again
            Err(e) => span.in_scope(|| warn!(error = %e, "mirror housekeeping failed")),
        }
    }
    let dir = path.to_owned();
    done.size_bytes = tokio::task::spawn_blocking(move || disk_size(&dir))
        .await
        .ok();
    done
}
