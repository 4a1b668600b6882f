//! Around one attempt of a sync: its in-flight gauge and start metrics, the backoff
//! before a retry, and the fresh delivery of one a shutdown interrupted.

use std::time::Duration;

use stasis_shared::domain::SyncMirror;
use tracing::info;

use crate::context::WorkerContext;
use crate::error::WorkerError;
use crate::record::Started;

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

/// Exponential with jitter, from `sync.retry_base_delay` up to `sync.retry_max_delay`.
pub(crate) fn backoff(ctx: &WorkerContext, attempt: i32) -> Duration {
    let sync = &ctx.cfg.sync;
    stasis_shared::backoff::delay(
        sync.retry_base_delay,
        sync.retry_max_delay,
        attempt.max(0) as u32,
        true,
    )
}

/// The job of an interrupted attempt is pending again (recorded with the run), due now:
/// a fresh delivery lets any worker take it at once instead of after the lock's TTL or
/// the reaper's pass. Its lock is released by the caller like any attempt's.
pub(crate) async fn requeue_interrupted(
    ctx: &WorkerContext,
    job: &SyncMirror,
) -> Result<(), WorkerError> {
    info!("sync interrupted by shutdown; job requeued");
    metrics::counter!("stasis_syncs_interrupted_total").increment(1);
    ctx.enqueuer.push(vec![job.clone()]).await?;
    Ok(())
}
