//! The `SyncMirror` job: read it, then lock the repository, fetch and record (a
//! [`SyncAttempt`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::Data;
use chrono::Utc;
use stasis_shared::db::repos;
use stasis_shared::domain::{JobState, SyncMirror};
use tracing::{debug, info_span, warn, Instrument};

use crate::context::WorkerContext;
use crate::error::WorkerError;
use crate::sync::attempt::{Acquired, SyncAttempt};

/// Entry point apalis calls for each delivery. Deliveries are at-least-once: every
/// step below tolerates running again for a job that already ran or is running.
pub async fn handle(
    payload: serde_json::Value,
    ctx: Data<Arc<WorkerContext>>,
) -> Result<(), WorkerError> {
    let job: SyncMirror = match serde_json::from_value(payload) {
        Ok(job) => job,
        Err(e) => {
            // Retrying cannot fix it and failing would redeliver it: drop it, loudly.
            metrics::counter!("stasis_jobs_poison_total").increment(1);
            warn!(error = %e, "dropped a queue payload that is not a SyncMirror job");
            return Ok(());
        }
    };
    let span = info_span!(
        "sync",
        job_id = %job.job_id,
        repo_id = %job.repo_id,
        reason = %job.reason,
        attempt = tracing::field::Empty,
    );
    // The attempt runs in a task of its own: apalis drops a consumer's handler futures
    // when it restarts that consumer (a Redis error), and an attempt cut off between
    // its steps would leave its job running and its lease renewed by nobody's fetch.
    let ctx = Arc::clone(&ctx);
    let attempt = tokio::spawn(async move { deliver(&ctx, job).await }.instrument(span.clone()));
    let result = attempt
        .await
        .unwrap_or_else(|join| Err(WorkerError::Task(join.to_string())));
    if let Err(e) = &result {
        if let WorkerError::Db(db) = e {
            stasis_shared::db::outage(db);
        }
        stasis_shared::error::count_backend_error(e.backend(), "deliver");
        span.in_scope(|| warn!(error = %e, "delivery failed; it will be redelivered"));
    }
    result
}

async fn deliver(ctx: &WorkerContext, job: SyncMirror) -> Result<(), WorkerError> {
    // A delivery of a job recorded as running that finds the repository locked holds
    // either a duplicate (the sync is alive) or a dead worker's job: apalis hands a
    // silent consumer's deliveries on by its own clock, up to a second before that
    // worker's liveness key expires and its lock may be taken over. Dropping it then
    // would leave the job running with nobody on it until the scheduler's reaper, so it
    // tries again until the holder's liveness window has surely passed.
    let mut patience: Option<Instant> = None;
    loop {
        let Some(found) = repos::find_for_job(&ctx.pool, job.job_id).await? else {
            debug!("job or repository no longer exists");
            return Ok(());
        };
        if !matches!(found.job_state, JobState::Pending | JobState::Running) {
            debug!(state = %found.job_state, "job already finished; duplicate delivery dropped");
            return Ok(());
        }
        if !ctx.serves(found.repo.route()) {
            // its mirror moved (or began moving) since this delivery was pushed: the job
            // waits in Postgres, and the dispatcher delivers it to its storage's lane
            debug!(
                storage = found.repo.route(),
                "delivery for a storage this worker does not serve; handed back"
            );
            if found.job_state == JobState::Pending {
                return postpone(ctx, job, Duration::ZERO).await;
            }
            return Ok(());
        }
        let early = found.job_run_at - Utc::now();
        if found.job_state == JobState::Pending && early > chrono::Duration::seconds(2) {
            // A duplicate of a job waiting out its retry backoff: move it to when it is due.
            return postpone(ctx, job, early.to_std().unwrap_or_default()).await;
        }
        let delay = match SyncAttempt::acquire(ctx, job.clone(), &found).await? {
            Acquired::Attempt(attempt) => return attempt.run().await,
            Acquired::Finished => return Ok(()),
            Acquired::Postponed(delay) => delay,
        };
        if found.job_state == JobState::Pending {
            return postpone(ctx, job, delay).await;
        }
        let queue = &ctx.cfg.queue;
        let give_up = *patience.get_or_insert_with(|| {
            Instant::now() + queue.liveness_window() + queue.heartbeat_interval
        });
        if Instant::now() + delay > give_up {
            debug!("repository locked by the live sync of this job; duplicate delivery dropped");
            return Ok(());
        }
        tokio::time::sleep(delay).await;
    }
}

/// This delivery ends; the job waits in Postgres for `delay` and is then delivered
/// afresh (a job that is not pending, running elsewhere or finished, needs none).
pub(crate) async fn postpone(
    ctx: &WorkerContext,
    job: SyncMirror,
    delay: Duration,
) -> Result<(), WorkerError> {
    ctx.jobs.postpone(job.job_id, delay).await?;
    Ok(())
}
