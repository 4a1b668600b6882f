//! A sync's metrics: in flight, started, finished.

use std::time::Duration;

use crate::git::fetch::{FetchError, FetchReport};
use stasis_shared::domain::lifecycle::attempt::Started;
use stasis_shared::domain::SyncMirror;

use stasis_shared::domain::lifecycle::policy::End;

/// A sync counted in `stasis_worker_inflight_jobs` for as long as this is held, whichever
/// way its attempt ends.
pub(crate) struct Inflight;

impl Inflight {
    pub(crate) fn count() -> Self {
        metrics::gauge!("stasis_worker_inflight_jobs").increment(1.0);
        Self
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        metrics::gauge!("stasis_worker_inflight_jobs").decrement(1.0);
    }
}

/// The attempt's number on its span, and the metrics of a started attempt.
pub(crate) fn announce(job: &SyncMirror, started: &Started) {
    tracing::Span::current().record("attempt", started.attempt);
    metrics::counter!("stasis_syncs_started_total", "reason" => job.reason.as_str()).increment(1);
    metrics::histogram!("stasis_job_queue_wait_seconds").record(started.waited_secs);
    if started.rescued {
        metrics::counter!("stasis_jobs_rescued_total").increment(1);
    }
}

pub(crate) fn observe(
    job: &SyncMirror,
    fetched: &Result<FetchReport, FetchError>,
    took: Duration,
    end: Option<End>,
) {
    let outcome = match end {
        None => "lost_lock",
        Some(End::Interrupted) => "interrupted",
        Some(End::Success { .. }) => "success",
        Some(End::Retry { .. } | End::Failed { .. }) => "failure",
    };
    metrics::counter!("stasis_jobs_finished_total", "outcome" => outcome, "reason" => job.reason.as_str())
        .increment(1);
    metrics::histogram!("stasis_sync_duration_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
    match fetched {
        Ok(report) => {
            if report.unchanged {
                metrics::counter!("stasis_syncs_unchanged_total").increment(1);
            }
            metrics::counter!("stasis_git_received_bytes_total").increment(report.bytes_received);
            metrics::counter!("stasis_git_received_objects_total")
                .increment(report.objects_received.into());
            metrics::counter!("stasis_refs_created_total").increment(report.refs_created.into());
            metrics::histogram!("stasis_sync_step_duration_seconds", "step" => "list")
                .record(report.list_time.as_secs_f64());
            if !report.unchanged {
                metrics::histogram!("stasis_sync_step_duration_seconds", "step" => "fetch")
                    .record(report.fetch_time.as_secs_f64());
            }
            metrics::counter!("stasis_refs_updated_total").increment(report.refs_changed().into());
            metrics::counter!("stasis_refs_pruned_total").increment(report.refs_pruned.into());
        }
        Err(error) => {
            metrics::counter!("stasis_sync_failures_total", "error_kind" => error.kind.as_str())
                .increment(1);
        }
    }
}
