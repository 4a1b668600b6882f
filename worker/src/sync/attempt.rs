//! One attempt of a sync as one value: [`SyncAttempt::acquire`] takes the repository's
//! lease (renewed for as long as the value lives, watched by the fetch's stop flag),
//! [`SyncAttempt::run`] waits for a permit and a fleet slot, fetches, records the result
//! (and, after it, the figures of a housekeeping pass that outlasted the LFS step) and
//! gives the lease back once the pass has ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::git::fetch::{FetchError, FetchReport, StopFlag};
use crate::git::gate::WriteGate;
use chrono::{DateTime, Utc};
use stasis_shared::db::repos::{self, Repo, RepoForJob};
use stasis_shared::domain::lifecycle::attempt::{self, Attempt, Finish, Started};
use stasis_shared::domain::lifecycle::policy::{End, Limits};
use stasis_shared::domain::lifecycle::rescue;
use stasis_shared::domain::{JobState, SyncMirror};
use stasis_shared::git::url::upstream_host;
use stasis_shared::lock::{Lease, Renewal};
use tracing::{debug, info, warn};

use crate::context::WorkerContext;
use crate::error::WorkerError;
use crate::git::lfs::LfsReport;
use crate::handler::postpone;
use crate::keepalive::KeepAlive;
use crate::permits::Permit;
use crate::shutdown::Registered;
use crate::sync::after::{after_fetch, Housekeeping};
use crate::sync::fetch::fetch;
use crate::sync::housekeeping::Housekept;
use crate::sync::moving;
use crate::sync::observe::{announce, observe, Inflight};
use crate::sync::record::Observed;
use stasis_shared::domain::lifecycle::housekept;

/// How long a sync runs before its start is recorded anyway. One that ends at the ref
/// listing within it, with nothing written (most syncs), is recorded start and end in
/// one transaction; operators see anything slower as running, as soon as this passes.
const RECORD_START_AFTER: Duration = Duration::from_millis(500);

pub(crate) enum Acquired<'c> {
    Attempt(Box<SyncAttempt<'c>>),
    /// The repository is locked by another sync: deliver again after this.
    Postponed(Duration),
    /// Under the lease the job turned out finished, or gone with its repository.
    Finished,
}

pub(crate) struct SyncAttempt<'c> {
    ctx: &'c WorkerContext,
    job: SyncMirror,
    repo: Repo,
    /// The mirror's directory, and the root of its storage: the target's during a move.
    path: PathBuf,
    root: PathBuf,
    max_attempts: i32,
    lease: Lease,
    /// Stops the fetch: the lease lost, the sync's timeout, the worker's shutdown.
    stop: Arc<StopFlag>,
    renewal: KeepAlive,
    /// Counted among the worker's syncs that a shutdown waits for (and stops).
    registered: Registered,
}

impl<'c> SyncAttempt<'c> {
    /// `read` is the job's row as read before: its fence is the floor of the lease's.
    pub(crate) async fn acquire(
        ctx: &'c WorkerContext,
        job: SyncMirror,
        read: &RepoForJob,
    ) -> Result<Acquired<'c>, WorkerError> {
        let ttl = ctx.cfg.sync.lock_ttl;
        let key = ctx.leases.repo_key(read.repo.id);
        let floor = read.repo.sync_fence;
        let Some(lease) = ctx.leases.try_acquire(&key, ttl, floor).await? else {
            metrics::counter!("stasis_lock_contention_total").increment(1);
            debug!("repository locked by another sync; delivery postponed");
            return Ok(Acquired::Postponed(ctx.cfg.sync.lock_retry_delay));
        };
        if lease.taken_over {
            metrics::counter!("stasis_locks_taken_over_total").increment(1);
            info!("repository lock taken over from a worker whose heartbeat lapsed");
        }
        // Read again under the lease: a rename or a removal takes the same lease, so
        // what was read before it may name a directory that has moved or gone.
        let found = match repos::find_for_job(&ctx.pool, job.job_id).await {
            Ok(Some(found)) if matches!(found.job_state, JobState::Pending | JobState::Running) => {
                found
            }
            read => {
                if let Err(e) = ctx.leases.release(&lease).await {
                    warn!(error = %e, "repository lock could not be released");
                }
                read?;
                debug!("job finished or gone meanwhile; duplicate delivery dropped");
                return Ok(Acquired::Finished);
            }
        };
        let repo = found.repo;
        let (Some(path), Some(root)) = (ctx.mirror_path(&repo), ctx.root_of(&repo)) else {
            // a move began since the delivery was read: the job goes to its new storage
            if let Err(e) = ctx.leases.release(&lease).await {
                warn!(error = %e, "repository lock could not be released");
            }
            if found.job_state == JobState::Pending {
                ctx.jobs.postpone(job.job_id, Duration::ZERO).await?;
            }
            debug!(
                storage = repo.route(),
                "the mirror's storage is not this worker's; handed back"
            );
            return Ok(Acquired::Finished);
        };
        let root = root.to_path_buf();
        // Renewed from the moment it is held: the delivery may wait for a permit first.
        // A lease that cannot be renewed stops the fetch, since another worker may now
        // own the repository.
        let stop = Arc::new(StopFlag::default());
        let registered = ctx.syncs.register(&stop);
        let renewal = KeepAlive::lease(ctx.leases.clone(), lease.clone(), ttl, stop.clone());
        Ok(Acquired::Attempt(Box::new(Self {
            ctx,
            job,
            repo,
            path,
            root,
            max_attempts: found.job_max_attempts,
            lease,
            stop,
            renewal,
            registered,
        })))
    }

    /// Syncs under the lease, then releases it whatever happened.
    pub(crate) async fn run(self) -> Result<(), WorkerError> {
        let result = self.run_held().await;
        self.release().await;
        result
    }

    /// Waits for one of this worker's permits and takes a slot under the fleet's caps.
    /// A delivery whose lock lapsed while it waited, or whose host is at its cap, is
    /// postponed.
    async fn run_held(&self) -> Result<(), WorkerError> {
        let ctx = self.ctx;
        let permit = ctx
            .permits
            .acquire(self.repo.route(), self.job.reason.lane())
            .await;
        if self.stop.is_stopped() {
            debug!(
                "stopped while waiting for a permit (lock lapsed or shutdown); delivery postponed"
            );
            return self.postpone(ctx.cfg.sync.lock_retry_delay).await;
        }
        let ttl = ctx.cfg.sync.lock_ttl;
        let host = self
            .repo
            .mirror_url
            .as_deref()
            .map_or("local".into(), upstream_host);
        let Some(slot) = ctx.slots.try_acquire(&host, ttl).await? else {
            metrics::counter!("stasis_host_throttled_total").increment(1);
            debug!(%host, "sync cap for this host or the fleet reached; delivery postponed");
            // spread the retries out: a burst from one host must not come back at once
            let delay = ctx
                .cfg
                .sync
                .lock_retry_delay
                .mul_f64(1.0 + rand::random::<f64>());
            return self.postpone(delay).await;
        };
        // renewed from the moment it is held: the bookkeeping before the fetch may
        // outlast a short TTL on a loaded database
        let renewal = slot
            .holds_any()
            .then(|| KeepAlive::slot(ctx.slots.clone(), slot.clone(), ttl));
        let result = self.sync(permit).await;
        drop(renewal);
        if let Err(e) = ctx.slots.release(&slot).await {
            warn!(error = %e, "could not release sync slot; it expires on its own");
        }
        result
    }

    /// Fetches, recording the start as soon as the fetch is about to write, fails or
    /// takes long; then the LFS step beside housekeeping, the end once the LFS step is
    /// done, and the pass's figures once it is.
    async fn sync(&self, permit: Permit<'_>) -> Result<(), WorkerError> {
        let ctx = self.ctx;
        if self.repo.move_to.is_some() {
            moving::begin(ctx, &self.repo, &self.path).await?;
        }
        let gate = Arc::new(WriteGate::default());
        let inflight = Inflight::count();
        let began = Instant::now();
        let started_at = Utc::now();
        // logged as the fetch begins, before it connects: the upstream may take long
        // to answer, and the record of the start waits for that
        info!("sync started");
        let fetch = fetch(
            ctx,
            &self.repo,
            self.path.clone(),
            self.job.job_id,
            self.stop.clone(),
            gate.clone(),
        );
        tokio::pin!(fetch);
        let early = tokio::select! {
            fetched = &mut fetch => Some(fetched),
            () = gate.asked() => None,
            () = tokio::time::sleep(RECORD_START_AFTER) => None,
        };
        let (fetched, started) = match early {
            Some(Ok(report)) => (Ok(report), None),
            early => {
                let started = attempt::start(&ctx.pool, &self.attempt(started_at)).await;
                gate.decide(matches!(started, Ok(Some(_))));
                let fetched = match early {
                    Some(fetched) => fetched,
                    None => fetch.await,
                };
                let Some(started) = started? else {
                    debug!("job no longer runnable or a newer sync started; nothing to do");
                    return Ok(());
                };
                announce(&self.job, &started);
                debug!("sync recorded as running");
                (fetched, Some(started))
            }
        };
        let duration = began.elapsed();
        let (lfs, housekeeping) = match &fetched {
            Ok(report) => after_fetch(self.ctx, &self.repo, &self.path, report, &self.stop).await,
            Err(_) => (None, Housekeeping::Done(Housekept::default())),
        };
        let pass = match housekeeping {
            Housekeeping::Done(housekept) => {
                drop(inflight);
                // The git work is done: the next sync may start while this one is
                // recorded. The run row spans exactly this work, so runs recorded at
                // once never exceed the permits.
                drop(permit);
                let ended = self.record(
                    &fetched,
                    started,
                    started_at,
                    duration,
                    Some(housekept),
                    lfs.as_ref(),
                );
                return ended.await.map(drop);
            }
            Housekeeping::Running(pass) => pass,
        };
        // The mirror is complete (its refs and LFS objects are in): its status turns
        // `success` now, while the serving indexes are still being written.
        let ended = self
            .record(&fetched, started, started_at, duration, None, lfs.as_ref())
            .await;
        // The pass ends under the lease and the permit whatever the record did: the
        // next sync of this mirror must not run git beside it.
        let housekept = pass.await;
        drop(inflight);
        drop(permit);
        if let Some(run_id) = ended? {
            self.record_housekept(run_id, started_at, housekept).await?;
        }
        Ok(())
    }

    /// Writes a pass's figures on the run its sync's end recorded.
    async fn record_housekept(
        &self,
        run_id: i64,
        started_at: DateTime<Utc>,
        housekept: Housekept,
    ) -> Result<(), WorkerError> {
        let figures = housekept::Figures {
            housekeeping: housekept
                .repack
                .map(|(kind, took)| (kind.as_str(), took.as_millis() as i32)),
            size_bytes: housekept.size_bytes.map(|b| b as i64),
        };
        let attempt = self.attempt(started_at);
        if !housekept::record(&self.ctx.pool, &attempt, run_id, figures).await? {
            warn!("repository lock was lost during housekeeping; its figures are not recorded");
        }
        Ok(())
    }

    /// Ends this delivery before the sync starts; the job waits in Postgres for `delay`.
    /// While the lease is still ours, a job a dead worker left running goes back to
    /// pending with it (see [`rescue::postpone_held`]); without the lease, its new holder
    /// has the job.
    async fn postpone(&self, delay: Duration) -> Result<(), WorkerError> {
        let ctx = self.ctx;
        let renewed = ctx.leases.renew(&self.lease, ctx.cfg.sync.lock_ttl).await;
        if matches!(renewed, Ok(Renewal::Renewed | Renewal::Reclaimed)) {
            rescue::postpone_held(&ctx.pool, self.job.job_id, self.lease.fence, delay).await?;
            Ok(())
        } else {
            postpone(ctx, self.job.clone(), delay).await
        }
    }

    fn attempt(&self, started_at: DateTime<Utc>) -> Attempt<'_> {
        Attempt {
            job_id: self.job.job_id,
            repo_id: self.repo.id,
            worker: &self.ctx.name,
            fence: self.lease.fence,
            started_at,
        }
    }

    /// Decides how the attempt ended, records it, and acts on it: a retry's delivery,
    /// an interrupted job's fresh one. `housekept` is `None` while the pass still runs.
    /// Answers the run row when the end was ours to record.
    async fn record(
        &self,
        fetched: &Result<FetchReport, FetchError>,
        started: Option<Started>,
        started_at: DateTime<Utc>,
        duration: Duration,
        housekept: Option<Housekept>,
        lfs: Option<&LfsReport>,
    ) -> Result<Option<i64>, WorkerError> {
        let ctx = self.ctx;
        let observed = Observed {
            fetched,
            interrupted: ctx.syncs.interrupted(&self.stop),
        };
        let root = &self.root;
        let (error, error_kind) = observed.error(root);
        let finished = attempt::finish(
            &ctx.pool,
            &Finish {
                attempt: self.attempt(started_at),
                started,
                outcome: observed.outcome(),
                allowed: self.max_attempts,
                error: error.as_deref(),
                error_kind,
                duration,
                stats: observed.stats(housekept, lfs, root),
                default_interval: ctx.cfg.mirror.sync_interval,
                limits: Limits {
                    max_interval: ctx.cfg.mirror.max_sync_interval,
                    hard_fail_after: ctx.cfg.mirror.hard_fail_after,
                    retry_base: ctx.cfg.sync.retry_base_delay,
                    retry_max: ctx.cfg.sync.retry_max_delay,
                },
                repo_name: &format!("{}/{}", self.repo.owner, self.repo.name),
                notify_urls: &ctx.cfg.notify.urls,
                max_attempts: ctx.cfg.sync.max_attempts as i32,
            },
        )
        .await?;
        if started.is_none() {
            let Some(started) = finished.started else {
                debug!("job no longer runnable or a newer sync started; nothing recorded");
                return Ok(None);
            };
            announce(&self.job, &started);
        }
        observe(&self.job, fetched, duration, finished.end);
        let Some(end) = finished.end else {
            warn!("repository lock was lost during the sync; its new owner's results stand");
            return Ok(None);
        };
        if self.repo.move_to.is_some() {
            moving::end(ctx, &self.repo, &self.path, self.lease.fence, &end, fetched).await?;
        }
        if let Some(follow_up) = finished.follow_up {
            info!(follow_up_job_id = %follow_up.job_id, "a sync was requested during this one; follow-up queued");
            ctx.jobs.admit(&[follow_up]).await;
        }
        match (end, fetched) {
            (End::Success { .. }, Ok(report)) => info!(
                unchanged = report.unchanged,
                refs_changed = report.refs_changed(),
                refs_pruned = report.refs_pruned,
                bytes = report.bytes_received,
                ms = duration.as_millis() as u64,
                "sync succeeded"
            ),
            (End::Retry { delay }, Err(error)) => {
                // pending again, due after its backoff: the dispatcher delivers it then
                info!(error = %error, delay_s = delay.as_secs(), "sync failed; retry scheduled");
                metrics::counter!("stasis_sync_retries_total").increment(1);
            }
            (End::Interrupted, _) => {
                // pending again (recorded with the run), due now: a fresh delivery lets
                // any worker take it at once instead of after the lock's TTL or the
                // reaper's pass
                info!("sync interrupted by shutdown; job requeued");
                metrics::counter!("stasis_syncs_interrupted_total").increment(1);
                ctx.jobs.admit(std::slice::from_ref(&self.job)).await;
            }
            (_, Err(error)) => warn!(error = %error, kind = %error.kind, "sync failed"),
            (_, Ok(_)) => {}
        }
        Ok(finished.run_id)
    }

    /// Stops renewing the lease and gives it back; unregistered from the shutdown last.
    async fn release(self) {
        let SyncAttempt {
            ctx,
            lease,
            renewal,
            registered,
            ..
        } = self;
        drop(renewal);
        if let Err(e) = ctx.leases.release(&lease).await {
            // It expires on its own within lock_ttl.
            warn!(error = %e, "repository lock could not be released");
        }
        drop(registered);
    }
}
