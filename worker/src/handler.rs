//! The `SyncMirror` job: lock the repository, fetch, record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::Data;
use chrono::Utc;
use stasis_shared::db::repos::{self, Repo};
use stasis_shared::domain::{ErrorKind, JobState, SyncMirror};
use stasis_shared::git::fetch::{
    fetch_mirror, FetchError, FetchReport, FetchRequest, StopFlag, StopReason,
};
use stasis_shared::git::gate::WriteGate;
use stasis_shared::git::mirror_path;
use stasis_shared::git::selection::RefSelection;
use stasis_shared::git::transport::NetworkPolicy;
use stasis_shared::git::url::{upstream_host, with_credentials};
use stasis_shared::lock::Lease;
use tokio::sync::SemaphorePermit;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::attempt::{announce, backoff, requeue_interrupted, Inflight};
use crate::context::WorkerContext;
use crate::error::WorkerError;
use crate::housekeeping::{self, Housekept};
use crate::keepalive::KeepAlive;
use crate::observe::observe;
use crate::record::{self, Ending, Finish};

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
    let Some(found) = repos::find_for_job(&ctx.pool, job.job_id).await? else {
        debug!("job or repository no longer exists");
        return Ok(());
    };
    let repo = &found.repo;
    let state: JobState = found
        .job_state
        .parse()
        .map_err(|e| WorkerError::Corrupt(format!("{e}")))?;
    if !matches!(state, JobState::Pending | JobState::Running) {
        debug!(%state, "job already finished; duplicate delivery dropped");
        return Ok(());
    }
    let early = found.job_run_at - Utc::now();
    if early > chrono::Duration::seconds(2) {
        // A duplicate of a job waiting out its retry backoff: move it to when it is due.
        ctx.enqueuer
            .push_delayed(job, early.to_std().unwrap_or_default())
            .await?;
        return Ok(());
    }

    let key = ctx.leases.repo_key(repo.id);
    let ttl = ctx.cfg.sync.lock_ttl;
    let Some(lease) = ctx.leases.try_acquire(&key, ttl, repo.sync_fence).await? else {
        metrics::counter!("stasis_lock_contention_total").increment(1);
        debug!("repository locked by another sync; delivery postponed");
        ctx.enqueuer
            .push_delayed(job, ctx.cfg.sync.lock_retry_delay)
            .await?;
        return Ok(());
    };
    // Renewed from the moment it is held: the delivery may wait for a permit first. A
    // lease that cannot be renewed stops the fetch, since another worker may now own
    // the repository.
    if lease.taken_over {
        metrics::counter!("stasis_locks_taken_over_total").increment(1);
        info!("repository lock taken over from a worker whose heartbeat lapsed");
    }
    let stop = Arc::new(StopFlag::default());
    let _in_flight = ctx.syncs.register(&stop);
    let keep = KeepAlive::lease(ctx.leases.clone(), lease.clone(), ttl, stop.clone());
    let result = sync_leased(ctx, job, &found, &lease, &stop).await;
    drop(keep);
    if let Err(e) = ctx.leases.release(&lease).await {
        // It expires on its own within lock_ttl.
        warn!(error = %e, "repository lock could not be released");
    }
    result
}

/// Waits for one of this worker's permits, takes a slot under the fleet's caps and
/// syncs. A delivery whose lock lapsed while it waited, or whose host is at its cap, is
/// postponed.
async fn sync_leased(
    ctx: &WorkerContext,
    job: SyncMirror,
    found: &repos::RepoForJob,
    lease: &Lease,
    stop: &Arc<StopFlag>,
) -> Result<(), WorkerError> {
    let repo = &found.repo;
    let permit = ctx.permits.acquire(job.reason.lane()).await;
    if stop.is_stopped() {
        debug!("repository lock lapsed while waiting for a permit; delivery postponed");
        return ctx
            .enqueuer
            .push_delayed(job, ctx.cfg.sync.lock_retry_delay)
            .await
            .map_err(WorkerError::from);
    }
    let ttl = ctx.cfg.sync.lock_ttl;
    let host = repo
        .mirror_url
        .as_deref()
        .map_or("local".into(), upstream_host);
    match ctx.slots.try_acquire(&host, ttl).await {
        Ok(Some(slot)) => {
            // renewed from the moment it is held: the bookkeeping before the fetch may
            // outlast a short TTL on a loaded database
            let keep = slot
                .holds_any()
                .then(|| KeepAlive::slot(ctx.slots.clone(), slot.clone(), ttl));
            let result =
                run_locked(ctx, &job, repo, found.job_max_attempts, lease, stop, permit).await;
            drop(keep);
            if let Err(e) = ctx.slots.release(&slot).await {
                warn!(error = %e, "could not release sync slot; it expires on its own");
            }
            result
        }
        Ok(None) => {
            metrics::counter!("stasis_host_throttled_total").increment(1);
            debug!(%host, "sync cap for this host or the fleet reached; delivery postponed");
            // spread the retries out: a burst from one host must not come back at once
            let delay = ctx
                .cfg
                .sync
                .lock_retry_delay
                .mul_f64(1.0 + rand::random::<f64>());
            ctx.enqueuer
                .push_delayed(job, delay)
                .await
                .map_err(WorkerError::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// How long a sync runs before its start is recorded anyway. One that ends at the ref
/// listing within it, with nothing written (most syncs), is recorded start and end in one
/// statement; operators see anything slower as running, as soon as this passes.
const RECORD_START_AFTER: Duration = Duration::from_millis(500);

async fn run_locked(
    ctx: &WorkerContext,
    job: &SyncMirror,
    repo: &Repo,
    max_attempts: i32,
    lease: &Lease,
    stop: &Arc<StopFlag>,
    permit: SemaphorePermit<'_>,
) -> Result<(), WorkerError> {
    let gate = Arc::new(WriteGate::default());
    let inflight = Inflight::count();
    let began = Instant::now();
    let started_at = Utc::now();
    let fetch = fetch(ctx, repo, stop.clone(), gate.clone());
    tokio::pin!(fetch);
    let early = tokio::select! {
        fetched = &mut fetch => Some(fetched),
        () = gate.asked() => None,
        () = tokio::time::sleep(RECORD_START_AFTER) => None,
    };
    let (fetched, started) = match early {
        Some(Ok(report)) => (Ok(report), None),
        early => {
            // about to write, failed or slow: record the start first, as for any attempt
            let started = record::start(
                &ctx.pool,
                &record::Attempt {
                    job_id: job.job_id,
                    repo_id: repo.id,
                    worker: &ctx.name,
                    fence: lease.fence,
                    started_at,
                },
            )
            .await;
            gate.decide(matches!(started, Ok(Some(_))));
            let fetched = match early {
                Some(fetched) => fetched,
                None => fetch.await,
            };
            match started? {
                Some(started) => {
                    announce(job, &started);
                    info!("sync started");
                    (fetched, Some(started))
                }
                None => {
                    debug!("job no longer runnable or a newer sync started; nothing to do");
                    return Ok(());
                }
            }
        }
    };
    let duration = began.elapsed();
    let housekept = match &fetched {
        Ok(report) => {
            let path = mirror_path(&ctx.cfg.storage.root, &repo.owner, &repo.name);
            housekeeping::after_sync(&ctx.cfg, &path, report, stop).await
        }
        Err(_) => Housekept::default(),
    };
    drop(inflight);
    // The git work is done: the next sync may start while this one is recorded. The run
    // row spans exactly this work, so runs recorded at once never exceed the permits.
    drop(permit);

    let ending = match (&fetched, started) {
        (Ok(report), _) => Ending::Success(report),
        (Err(error), _) if ctx.syncs.interrupted(stop) => Ending::Interrupted(error),
        (Err(error), Some(started))
            if !error.kind.is_permanent() && started.attempt < max_attempts =>
        {
            Ending::Retry {
                error,
                delay: backoff(ctx, started.attempt),
            }
        }
        (Err(error), _) => Ending::Failed(error),
    };
    let finished = record::finish(
        &ctx.pool,
        &Finish {
            attempt: record::Attempt {
                job_id: job.job_id,
                repo_id: repo.id,
                worker: &ctx.name,
                fence: lease.fence,
                started_at,
            },
            run_id: started.map(|s| s.run_id),
            duration,
            default_interval: ctx.cfg.mirror.sync_interval,
            max_interval: ctx.cfg.mirror.max_sync_interval,
            hard_fail_after: ctx.cfg.mirror.hard_fail_after,
            repo_name: &format!("{}/{}", repo.owner, repo.name),
            notify_urls: &ctx.cfg.notify.urls,
            housekept,
            ending,
        },
    )
    .await?;
    if started.is_none() {
        let Some(started) = finished.started else {
            debug!("job no longer runnable or a newer sync started; nothing recorded");
            return Ok(());
        };
        announce(job, &started);
    }
    observe(job, &fetched, duration, finished.owned, ending);
    if !finished.owned {
        warn!("repository lock was lost during the sync; its new owner's results stand");
        return Ok(());
    }
    match ending {
        Ending::Success(report) => info!(
            unchanged = report.unchanged,
            refs_changed = report.refs_changed(),
            refs_pruned = report.refs_pruned,
            bytes = report.bytes_received,
            ms = duration.as_millis() as u64,
            "sync succeeded"
        ),
        Ending::Retry { error, delay } => {
            info!(error = %error, delay_s = delay.as_secs(), "sync failed; retry scheduled");
            metrics::counter!("stasis_sync_retries_total").increment(1);
            ctx.enqueuer.push_delayed(job.clone(), delay).await?;
        }
        Ending::Failed(error) => warn!(error = %error, kind = %error.kind, "sync failed"),
        Ending::Interrupted(_) => requeue_interrupted(ctx, job).await?,
    }
    Ok(())
}

/// Runs the fetch on a blocking thread, which `stop` stops.
async fn fetch(
    ctx: &WorkerContext,
    repo: &Repo,
    stop: Arc<StopFlag>,
    gate: Arc<WriteGate>,
) -> Result<FetchReport, FetchError> {
    let url = upstream_url(ctx, repo)?;
    // the upstream policy holds inside the fetch, where it connects
    let timeout = ctx.cfg.sync.timeout;
    let path = mirror_path(&ctx.cfg.storage.root, &repo.owner, &repo.name);
    let thread_stop = stop.clone();
    let deadline = Instant::now() + timeout;
    let selection = RefSelection {
        include: repo.include_refs.clone(),
        exclude: repo.exclude_refs.clone(),
    };
    let network = NetworkPolicy::from_config(&ctx.cfg);
    let mut fetch = tokio::task::spawn_blocking(move || {
        fetch_mirror(&FetchRequest {
            path: &path,
            url: &url,
            deadline,
            stop: &thread_stop,
            network: &network,
            selection: &selection,
            gate: &gate,
        })
    });
    // The fetch checks the deadline itself; this outer bound covers a thread stuck
    // where neither our transport nor a libgit2 callback looks at it. The sync's permit
    // is held until the thread has ended either way: a stopped fetch holds no memory
    // or connection beyond it.
    let joined = match tokio::time::timeout(timeout + Duration::from_secs(5), &mut fetch).await {
        Ok(joined) => joined,
        Err(_) => {
            stop.stop(StopReason::Timeout);
            let joined = fetch.await;
            if joined.is_ok() {
                return Err(FetchError {
                    kind: ErrorKind::Timeout,
                    message: "sync timed out".into(),
                });
            }
            joined
        }
    };
    joined.unwrap_or_else(|join| {
        Err(FetchError {
            kind: ErrorKind::Internal,
            message: format!("fetch thread failed: {join}"),
        })
    })
}

/// The URL to fetch: the stored one with its sealed credentials opened and put back.
fn upstream_url(ctx: &WorkerContext, repo: &Repo) -> Result<String, FetchError> {
    let Some(url) = repo.mirror_url.clone() else {
        return Err(FetchError {
            kind: ErrorKind::Internal,
            message: "repository has no upstream URL".into(),
        });
    };
    let Some(sealed) = &repo.mirror_credentials else {
        return Ok(url);
    };
    let opened = ctx.cipher.as_ref().map(|c| c.open(sealed));
    match opened {
        Some(Ok(userinfo)) => Ok(with_credentials(&url, &userinfo)),
        // Permanent: retrying cannot bring the key back.
        _ => Err(FetchError {
            kind: ErrorKind::Auth,
            message: "the stored credentials cannot be opened: secrets.key is missing or not \
                      the key they were sealed with"
                .into(),
        }),
    }
}
