//! What the scheduler leader does while it leads: a table of passes, each run at its own
//! period by the leader's loop ([`crate::leader::run`]). A pass that fails is logged,
//! counted under its name ([`stasis_shared::Error::record`]) and runs again when its
//! period comes round; one failing pass never holds up the others.

use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::settings;
use stasis_shared::jobs::Jobs;
use stasis_shared::ops::process;
use stasis_shared::queue::reclaim::Reclaimer;
use stasis_shared::scheduler_status::{self, SchedulerStatus};
use stasis_shared::Config;
use tracing::{debug, info, warn};

use crate::due::{enqueue_due, TickReport};
use crate::error::SchedulerError;
use crate::manifest::Manifests;
use crate::notify;
use crate::reaper::{reap, Reaped};
use crate::recovery::{Recovered, Recovery};
use crate::retention;
use crate::sample::sample;

/// How often the leader looks for dead workers' jobs and for lost Redis data.
const RECOVER_EVERY: Duration = Duration::from_secs(1);
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
/// How often the leader removes finished deliveries from Redis: a pass removes up to
/// 20,000 per lane, several times what a million hourly mirrors finish in between.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);
/// How often the leader delivers due notifications.
const NOTIFY_EVERY: Duration = Duration::from_secs(1);

/// One periodic piece of the leader's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Running jobs of dead workers and deliveries Redis lost, delivered again.
    Recover,
    /// Due mirrors enqueued.
    Tick,
    /// The system-wide gauges.
    Sample,
    /// Jobs and mirrors stuck past `scheduler.stuck_after`, repaired.
    Reap,
    /// History past `history.*`, deleted.
    Retain,
    /// Finished deliveries removed from Redis.
    Reclaim,
    /// Due notifications delivered.
    Notify,
}

impl Pass {
    /// The `op` its failures are counted under.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Recover => "recover",
            Pass::Tick => "tick",
            Pass::Sample => "sample",
            Pass::Reap => "reap",
            Pass::Retain => "retain",
            Pass::Reclaim => "reclaim",
            Pass::Notify => "notify",
        }
    }

    /// What the leader logs when the pass fails.
    fn failed(self) -> &'static str {
        match self {
            Pass::Recover => "recovery pass failed; retrying next pass",
            Pass::Tick => "scheduler tick failed; retrying next tick",
            Pass::Sample => "could not sample queue and mirror gauges",
            Pass::Reap => "reaper pass failed; retrying next pass",
            Pass::Retain => "history retention pass failed; retrying next pass",
            Pass::Reclaim => "Redis reclaim pass failed; retrying next pass",
            Pass::Notify => "notification pass failed; retrying next pass",
        }
    }
}

/// A pass in the leader's table: its period and when it is next due.
#[derive(Debug)]
pub struct Scheduled {
    pub pass: Pass,
    pub every: Duration,
    /// False when configured off: the tick while `mirror.enabled` is false.
    pub on: bool,
    /// A pass is due at once when a scheduler starts.
    pub next: Instant,
}

impl Scheduled {
    fn new(pass: Pass, every: Duration) -> Self {
        Scheduled {
            pass,
            every,
            on: true,
            next: Instant::now(),
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.on && now >= self.next
    }
}

/// The leader's passes, in the order a round of the loop runs them: recovery first, so
/// a dead worker's jobs are pending again before a tick counts the backlog.
pub fn table(cfg: &Config) -> Vec<Scheduled> {
    let tick = Scheduled {
        on: cfg.mirror.enabled,
        ..Scheduled::new(Pass::Tick, cfg.scheduler.tick)
    };
    vec![
        Scheduled::new(Pass::Recover, RECOVER_EVERY),
        tick,
        Scheduled::new(Pass::Sample, SAMPLE_EVERY),
        Scheduled::new(Pass::Reap, REAP_EVERY),
        Scheduled::new(Pass::Retain, RETAIN_EVERY),
        Scheduled::new(Pass::Reclaim, RECLAIM_EVERY),
        Scheduled::new(Pass::Notify, NOTIFY_EVERY),
    ]
}

/// `Some(after)`: run the pass again this soon instead of a period later.
type Sooner = Option<Duration>;

/// What the leader keeps between passes: the passes that remember where they got to,
/// and the status it publishes for operators.
pub struct Leader {
    cfg: Config,
    pool: PgPool,
    redis: ConnectionManager,
    job_service: Jobs,
    http: notify::Clients,
    recovery: Recovery,
    /// Where the retention passes of this leadership have reached.
    retained: retention::Progress,
    manifests: Manifests,
    reclaimer: Reclaimer,
    status: SchedulerStatus,
}

impl Leader {
    pub fn new(cfg: &Config, pool: &PgPool, redis: &ConnectionManager, job_service: &Jobs) -> Self {
        Leader {
            http: notify::client(cfg),
            manifests: Manifests::new(cfg),
            status: SchedulerStatus {
                leader: process::instance_name(),
                enabled: cfg.mirror.enabled,
                last_tick_at: None,
                next_tick_at: None,
            },
            cfg: cfg.clone(),
            pool: pool.clone(),
            redis: redis.clone(),
            job_service: job_service.clone(),
            recovery: Recovery::default(),
            retained: retention::Progress::default(),
            reclaimer: Reclaimer::default(),
        }
    }

    pub fn lost_leadership(&mut self) {
        self.recovery.lost_leadership();
    }

    /// Runs the due passes of `table` and marks when each is next due.
    pub async fn run_due(&mut self, table: &mut [Scheduled]) {
        for scheduled in table.iter_mut() {
            let started = Instant::now();
            if !scheduled.is_due(started) {
                continue;
            }
            scheduled.next = started + scheduled.every;
            if let Some(after) = self.run(scheduled.pass).await {
                scheduled.next = Instant::now() + after;
            }
        }
    }

    /// One pass; a failure is logged and counted here, for every pass alike.
    async fn run(&mut self, pass: Pass) -> Sooner {
        let ran = match pass {
            Pass::Recover => self.recover().await,
            Pass::Tick => self.tick().await,
            Pass::Sample => self.sample().await,
            Pass::Reap => self.reap().await,
            Pass::Retain => self.retain().await,
            Pass::Reclaim => self.reclaim().await,
            Pass::Notify => self.notify().await,
        };
        ran.unwrap_or_else(|e| {
            e.record(pass.name());
            warn!(error = %e, "{}", pass.failed());
            None
        })
    }

    /// Publishes who leads and when it next ticks (`None`: the tick is off); the key
    /// lives as long as the lease, so it disappears with a leader that stops.
    pub async fn publish_status(&mut self, next_tick: Option<Instant>, ttl: Duration) {
        self.status.next_tick_at =
            next_tick.map(|at| Utc::now() + at.saturating_duration_since(Instant::now()));
        let namespace = &self.cfg.queue.namespace;
        let published = scheduler_status::publish(&self.redis, namespace, &self.status, ttl).await;
        if let Err(e) = published {
            debug!(error = %e, "could not publish scheduler status");
        }
    }

    async fn recover(&mut self) -> Result<Sooner, SchedulerError> {
        let (cfg, pool, redis) = (&self.cfg, &self.pool, &self.redis);
        let r = self
            .recovery
            .pass(cfg, pool, redis, &self.job_service)
            .await?;
        if r != Recovered::default() {
            info!(
                rescued = r.rescued,
                redelivered = r.redelivered,
                "recovered jobs of dead workers or lost deliveries"
            );
        }
        Ok(None)
    }

    /// One tick unless an operator paused scheduling; the flag lives in Postgres so
    /// pausing needs no restart and survives a change of leader.
    async fn tick(&mut self) -> Result<Sooner, SchedulerError> {
        let Some(report) = self.enqueue_due().await? else {
            debug!("scheduler paused by an operator; tick skipped");
            return Ok(None);
        };
        self.status.last_tick_at = Some(Utc::now());
        if report.enqueued > 0 || report.backlog_full {
            info!(
                enqueued = report.enqueued,
                waves = report.waves,
                backlog_full = report.backlog_full,
                "scheduler tick"
            );
        }
        Ok(report.backlog_full.then_some(BACKLOG_RECHECK))
    }

    async fn enqueue_due(&mut self) -> Result<Option<TickReport>, SchedulerError> {
        let (cfg, pool, redis) = (&self.cfg, &self.pool, &self.redis);
        let paused = settings::scheduler_paused(pool).await?;
        metrics::gauge!("stasis_scheduler_paused").set(if paused { 1.0 } else { 0.0 });
        if paused {
            return Ok(None);
        }
        // a failed manifest round vouches for nothing: every due mirror is enqueued
        match self.manifests.round(cfg, pool).await {
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
        enqueue_due(cfg, pool, redis, &self.job_service)
            .await
            .map(Some)
    }

    async fn sample(&mut self) -> Result<Sooner, SchedulerError> {
        sample(&self.cfg, &self.pool, &self.redis).await?;
        Ok(None)
    }

    async fn reap(&mut self) -> Result<Sooner, SchedulerError> {
        let r = reap(&self.cfg, &self.pool, &self.redis, &self.job_service).await?;
        if r != Reaped::default() {
            info!(
                running = r.running,
                pending = r.pending,
                repositories = r.repositories,
                "reaper repaired stuck jobs and mirrors"
            );
        }
        Ok(None)
    }

    async fn retain(&mut self) -> Result<Sooner, SchedulerError> {
        let d = retention::enforce(&self.cfg, &self.pool, &mut self.retained).await?;
        if d != retention::Deleted::default() {
            info!(
                runs = d.runs,
                jobs = d.jobs,
                notifications = d.notifications,
                unchanged_checks = d.unchanged_checks,
                "old history deleted"
            );
        }
        Ok(None)
    }

    async fn reclaim(&mut self) -> Result<Sooner, SchedulerError> {
        let (lanes, max_dead) = (
            stasis_shared::queue::Lanes::of(&self.cfg),
            self.cfg.queue.max_dead,
        );
        let s = self.reclaimer.pass(&self.redis, &lanes, max_dead).await?;
        if s.dead + s.workers > 0 {
            info!(
                done = s.done,
                dead = s.dead,
                workers = s.workers,
                "finished deliveries removed from Redis"
            );
        } else {
            debug!(done = s.done, "finished deliveries removed from Redis");
        }
        Ok(None)
    }

    async fn notify(&mut self) -> Result<Sooner, SchedulerError> {
        notify::deliver_due(&self.cfg, &self.pool, &self.http).await?;
        Ok(None)
    }
}
