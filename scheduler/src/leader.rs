//! The scheduler loop: one active scheduler per namespace, chosen by a Redis lease that
//! a stand-by takes over when the leader stops renewing it.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::jobs::Jobs;
use stasis_shared::lock::{Lease, Leases, Renewal};
use stasis_shared::ops::outage::Outage;
use stasis_shared::scheduler_status;
use stasis_shared::Config;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::passes::{self, Leader, Pass};

pub async fn run(cfg: Config, pool: PgPool, redis: ConnectionManager, shutdown: CancellationToken) {
    let leases = Leases::new(redis.clone(), &cfg.queue.namespace);
    let job_service = Jobs::new(pool.clone(), redis.clone(), &cfg);
    // every scheduler (stand-bys too) offers to dispatch: waiting jobs keep moving
    // while leadership changes hands
    let dispatcher = tokio::spawn(stasis_shared::jobs::dispatch_loop(
        job_service.clone(),
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
    let redis_outage = Outage::new("redis");
    let mut leader = Leader::new(&cfg, &pool, &redis, &job_service);
    let mut table = passes::table(&cfg);
    if !cfg.mirror.enabled {
        info!("mirror.enabled is false: scheduled syncs are off");
    }

    loop {
        let renewal = Renewing {
            renewed_at: &mut renewed_at,
            check_every,
            outage: &redis_outage,
        };
        lease = hold_leadership(&leases, &key, ttl, lease, renewal).await;
        // set every pass: the exporter drops scheduler gauges left unset (see `sample`)
        metrics::gauge!("stasis_scheduler_leader").set(if lease.is_some() { 1.0 } else { 0.0 });
        stasis_shared::ops::telemetry::build_info();
        if lease.is_some() {
            leader.run_due(&mut table).await;
            let next_tick = table.iter().find(|s| s.pass == Pass::Tick && s.on);
            leader.publish_status(next_tick.map(|s| s.next), ttl).await;
        } else {
            leader.lost_leadership();
        }
        // until the next pass is due, checking the leadership in between
        let now = Instant::now();
        let next_due = table.iter().map(|s| s.next.saturating_duration_since(now));
        let wait = next_due
            .fold(check_every, Duration::min)
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

/// What a leadership check needs besides the lease: when it was last renewed, how
/// often it is checked, and the Redis outage it reports to (logged once per outage).
struct Renewing<'a> {
    renewed_at: &'a mut Instant,
    check_every: Duration,
    outage: &'a Outage,
}

async fn hold_leadership(
    leases: &Leases,
    key: &str,
    ttl: Duration,
    held: Option<Lease>,
    r: Renewing<'_>,
) -> Option<Lease> {
    // a hung Redis answers within `redis.response_timeout`; this bounds it however that
    // is configured, so the next attempt still comes before the lease expires
    let within = ttl / 3;
    let margin = r.check_every + within;
    match held {
        Some(lease) => match tokio::time::timeout(within, leases.renew(&lease, ttl)).await {
            Ok(Ok(Renewal::Renewed | Renewal::Reclaimed)) => {
                r.outage.succeeded();
                *r.renewed_at = Instant::now();
                Some(lease)
            }
            Ok(Ok(Renewal::Lost)) => {
                r.outage.succeeded();
                warn!("scheduler leadership lost");
                None
            }
            Ok(Err(e)) => {
                r.outage.failed("renewing scheduler leadership", &e);
                keep_until_expiry(lease, e.to_string(), *r.renewed_at, margin, ttl)
            }
            Err(_) => keep_until_expiry(lease, "timed out".into(), *r.renewed_at, margin, ttl),
        },
        None => match tokio::time::timeout(within, leases.try_acquire(key, ttl, 0)).await {
            Ok(Ok(Some(lease))) => {
                r.outage.succeeded();
                info!("became scheduler leader");
                *r.renewed_at = Instant::now();
                Some(lease)
            }
            Ok(Ok(None)) => {
                r.outage.succeeded();
                None
            }
            Ok(Err(e)) => {
                // tried every second while Redis is away: the outage is logged once
                r.outage.failed("taking scheduler leadership", &e);
                None
            }
            Err(_) => {
                r.outage.failed("taking scheduler leadership", &"timed out");
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
