//! The scheduler loop: one active scheduler per namespace, chosen by a Redis lease that
//! a stand-by takes over when the leader stops renewing it.

use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::settings;
use stasis_shared::lock::{Lease, Leases, Renewal};
use stasis_shared::queue::Enqueuer;
use stasis_shared::scheduler_status::{self, SchedulerStatus};
use stasis_shared::{process, Config};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::due::enqueue_due;
use crate::manifest::Manifests;
use crate::notify;
use crate::reaper::{reap, Reaped};
use crate::recovery::{Recovered, Recovery};
use crate::retention;
use crate::sample::sample;

/// After a tick stopped at the backlog bound, look again this soon rather than a full
/// tick later, so a large due set drains as fast as workers take it.
const BACKLOG_RECHECK: Duration = Duration::from_secs(1);
/// How often the leader samples the system-wide gauges (a Prometheus scrape interval).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How often the leader looks for stuck jobs and mirrors; each pass is a few indexed
/// queries.
const REAP_EVERY: Duration = Duration::from_secs(60);
/// How often the leader trims history: each pass deletes in small batches, so between
/// passes only a few minutes of syncs pile up.
const RETAIN_EVERY: Duration = Duration::from_secs(120);
/// How often the leader looks for dead workers' jobs and for lost Redis data.
const RECOVER_EVERY: Duration = Duration::from_secs(1);
/// How often the leader delivers due notifications.
const NOTIFY_EVERY: Duration = Duration::from_secs(1);

pub async fn run(cfg: Config, pool: PgPool, redis: ConnectionManager, shutdown: CancellationToken) {
    let leases = Leases::new(redis.clone(), &cfg.queue.namespace);
    let enqueuer = Enqueuer::new(
        pool.clone(),
        redis.clone(),
        &cfg.queue,
        cfg.sync.max_attempts,
    );
    // every scheduler (stand-bys too) offers to dispatch: waiting jobs keep moving
    // while leadership changes hands
    let dispatcher = tokio::spawn(stasis_shared::queue::dispatch_loop(
        enqueuer.clone(),
        cfg.queue.dispatch_interval,
        shutdown.clone(),
    ));
    let key = leases.leader_key();
    let ttl = cfg.scheduler.lease_ttl;
    let check_every = cfg.scheduler.tick.min(ttl / 3);
    let mut lease: Option<Lease> = None;
    // when the lease was last taken or renewed: a failed renewal keeps it until close
    // to its expiry, so one hung Redis command does not cost the leadership
    let mut renewed_at = Instant::now();
    let mut last_sample: Option<Instant> = None;
    let mut last_reap: Option<Instant> = None;
    let mut last_notify: Option<Instant> = None;
    let mut last_retain: Option<Instant> = None;
    // where the retention passes of this leadership have reached
    let mut retained = retention::Progress::default();
    let mut last_recover: Option<Instant> = None;
    let mut recovery = Recovery::default();
    let http = notify::client(&cfg);
    let mut manifests = Manifests::new(&cfg);
    let mut next_tick = Instant::now();
    let mut status = SchedulerStatus {
        leader: process::instance_name(),
        enabled: cfg.mirror.enabled,
        last_tick_at: None,
        next_tick_at: None,
    };
    if !cfg.mirror.enabled {
        info!("mirror.enabled is false: scheduled syncs are off");
    }

    loop {
        lease = hold_leadership(&leases, &key, ttl, lease, &mut renewed_at, check_every).await;
        // set every pass: the exporter drops scheduler gauges left unset (see `sample`)
        metrics::gauge!("stasis_scheduler_leader").set(if lease.is_some() { 1.0 } else { 0.0 });
        stasis_shared::telemetry::build_info();
        if lease.is_none() {
            recovery.lost_leadership();
        }
        if lease.is_some() && last_recover.is_none_or(|at| at.elapsed() >= RECOVER_EVERY) {
            last_recover = Some(Instant::now());
            match recovery.pass(&cfg, &pool, &redis, &enqueuer).await {
                Ok(r) if r != Recovered::default() => info!(
                    rescued = r.rescued,
                    redelivered = r.redelivered,
                    "recovered jobs of dead workers or lost deliveries"
                ),
                Ok(_) => {}
                Err(e) => {
                    e.record("recover");
                    warn!(error = %e, "recovery pass failed; retrying next pass");
                }
            }
        }
        if lease.is_some() && cfg.mirror.enabled && Instant::now() >= next_tick {
            next_tick = Instant::now() + cfg.scheduler.tick;
            match tick(&cfg, &pool, &redis, &enqueuer, &mut manifests).await {
                Ok(None) => debug!("scheduler paused by an operator; tick skipped"),
                Ok(Some(report)) => {
                    status.last_tick_at = Some(Utc::now());
                    if report.enqueued > 0 || report.backlog_full {
                        info!(
                            enqueued = report.enqueued,
                            waves = report.waves,
                            backlog_full = report.backlog_full,
                            "scheduler tick"
                        );
                    }
                    if report.backlog_full {
                        next_tick = Instant::now() + BACKLOG_RECHECK;
                    }
                }
                Err(e) => {
                    e.record("tick");
                    warn!(error = %e, "scheduler tick failed; retrying next tick");
                }
            }
        }
        if lease.is_some() && last_sample.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY) {
            last_sample = Some(Instant::now());
            if let Err(e) = sample(&cfg, &pool, &redis).await {
                e.record("sample");
                warn!(error = %e, "could not sample queue and mirror gauges");
            }
        }
        if lease.is_some() && last_reap.is_none_or(|at| at.elapsed() >= REAP_EVERY) {
            last_reap = Some(Instant::now());
            match reap(&cfg, &pool, &redis, &enqueuer).await {
                Ok(r) if r != Reaped::default() => info!(
                    running = r.running,
                    pending = r.pending,
                    repositories = r.repositories,
                    "reaper repaired stuck jobs and mirrors"
                ),
                Ok(_) => {}
                Err(e) => {
                    e.record("reap");
                    warn!(error = %e, "reaper pass failed; retrying next pass");
                }
            }
        }
        if lease.is_some() && last_retain.is_none_or(|at| at.elapsed() >= RETAIN_EVERY) {
            last_retain = Some(Instant::now());
            match retention::enforce(&cfg, &pool, &mut retained).await {
                Ok(d) if d != retention::Deleted::default() => info!(
                    runs = d.runs,
                    jobs = d.jobs,
                    notifications = d.notifications,
                    "old history deleted"
                ),
                Ok(_) => {}
                Err(e) => {
                    e.record("retain");
                    warn!(error = %e, "history retention pass failed; retrying next pass");
                }
            }
        }
        if lease.is_some() && last_notify.is_none_or(|at| at.elapsed() >= NOTIFY_EVERY) {
            last_notify = Some(Instant::now());
            if let Err(e) = notify::deliver_due(&cfg, &pool, &http).await {
                e.record("notify");
                warn!(error = %e, "notification pass failed; retrying next pass");
            }
        }
        if lease.is_some() {
            let until_next = next_tick.saturating_duration_since(Instant::now());
            status.next_tick_at = cfg.mirror.enabled.then(|| Utc::now() + until_next);
            let published =
                scheduler_status::publish(&redis, &cfg.queue.namespace, &status, ttl).await;
            if let Err(e) = published {
                debug!(error = %e, "could not publish scheduler status");
            }
        }
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(check_every)
            .min(NOTIFY_EVERY)
            .min(RECOVER_EVERY)
            .max(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(lease) = lease {
        // Hand over at once instead of making the stand-by wait out the lease.
        let _ = leases.release(&lease).await;
        let _ = scheduler_status::clear(&redis, &cfg.queue.namespace).await;
    }
    let _ = dispatcher.await;
    info!("scheduler stopped");
}

/// One tick unless an operator paused scheduling (`None`); the flag lives in Postgres
/// so pausing needs no restart and survives a change of leader.
async fn tick(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
    enqueuer: &Enqueuer,
    manifests: &mut Manifests,
) -> Result<Option<crate::due::TickReport>, crate::error::SchedulerError> {
    let paused = settings::scheduler_paused(pool).await?;
    metrics::gauge!("stasis_scheduler_paused").set(if paused { 1.0 } else { 0.0 });
    if paused {
        return Ok(None);
    }
    // a failed manifest round vouches for nothing: every due mirror is enqueued
    match manifests.round(cfg, pool).await {
        Ok(round) if round.skipped > 0 => {
            debug!(
                skipped = round.skipped,
                "due mirrors unchanged in their upstream's manifest"
            )
        }
        Ok(_) => {}
        Err(e) => {
            e.record("manifest");
            warn!(error = %e, "manifest round failed; due mirrors are enqueued without it");
        }
    }
    enqueue_due(cfg, pool, redis, enqueuer).await.map(Some)
}

async fn hold_leadership(
    leases: &Leases,
    key: &str,
    ttl: Duration,
    held: Option<Lease>,
    renewed_at: &mut Instant,
    check_every: Duration,
) -> Option<Lease> {
    // a hung Redis answers within `redis.response_timeout`; this bounds it however that
    // is configured, so the next attempt still comes before the lease expires
    let within = ttl / 3;
    match held {
        Some(lease) => {
            let renewal = tokio::time::timeout(within, leases.renew(&lease, ttl)).await;
            match renewal {
                Ok(Ok(Renewal::Renewed | Renewal::Reclaimed)) => {
                    *renewed_at = Instant::now();
                    Some(lease)
                }
                Ok(Ok(Renewal::Lost)) => {
                    warn!("scheduler leadership lost");
                    None
                }
                Ok(Err(e)) => {
                    keep_until_expiry(lease, e.to_string(), *renewed_at, check_every + within, ttl)
                }
                Err(_) => keep_until_expiry(
                    lease,
                    "timed out".into(),
                    *renewed_at,
                    check_every + within,
                    ttl,
                ),
            }
        }
        None => match tokio::time::timeout(within, leases.try_acquire(key, ttl, 0)).await {
            Ok(Ok(Some(lease))) => {
                info!("became scheduler leader");
                *renewed_at = Instant::now();
                Some(lease)
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                warn!(error = %e, "could not reach Redis for scheduler leadership");
                None
            }
            Err(_) => {
                warn!("Redis did not answer in time for scheduler leadership");
                None
            }
        },
    }
}

/// After a failed renewal: past the lease's expiry (less `margin`, a check and an
/// attempt) a stand-by may lead, so scheduling stops before that; until then the next
/// check tries again.
fn keep_until_expiry(
    lease: Lease,
    error: String,
    renewed_at: Instant,
    margin: Duration,
    ttl: Duration,
) -> Option<Lease> {
    if renewed_at.elapsed() + margin < ttl {
        warn!(%error, "could not renew scheduler leadership; will retry");
        Some(lease)
    } else {
        warn!(%error, "could not renew scheduler leadership before it expires");
        None
    }
}
