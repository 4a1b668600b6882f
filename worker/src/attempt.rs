//! Around one attempt of a sync: its in-flight gauge and start metrics, the backoff
//! before a retry, and the fresh delivery of one a shutdown interrupted.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
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
    let base = ctx.cfg.sync.retry_base_delay;
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(ctx.cfg.sync.retry_max_delay.max(base))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(base)
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
