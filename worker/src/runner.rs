//! The apalis worker set up deliberately around apalis-redis 1.0's sharp edges
//! (see `docs/apalis-redis-1.0.md`).

use std::future::Future;
use std::sync::Arc;

use crate::slots::Slots;
use apalis::layers::WorkerBuilderExt;
use apalis::prelude::{BackendExt, Monitor, WorkerBuilder};
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::{storages, workers};
use stasis_shared::domain::Lane;
use stasis_shared::lock::Leases;
use stasis_shared::ops::outage::Outage;
use stasis_shared::ops::process;
use stasis_shared::{jobs::Jobs, queue};
use stasis_shared::{liveness, Config};
use tracing::{debug, info, warn};

use crate::context::WorkerContext;
use crate::handler;
use crate::permits::SyncPermits;

/// How long stopped syncs get to record their runs after `worker.shutdown_grace`: a
/// stopped fetch ends within a second, and its bookkeeping is a few round trips.
const STOPPED_SYNCS_SETTLE: std::time::Duration = std::time::Duration::from_secs(4);

pub async fn run(
    cfg: Config,
    pool: PgPool,
    redis: ConnectionManager,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::git::fetch::set_network_timeouts(cfg.sync.timeout);
    crate::git::transport::configure_reuse(crate::git::transport::Reuse::from_config(&cfg));
    let concurrency = cfg.worker.concurrency;
    let grace = cfg.worker.shutdown_grace;
    let job_service = Jobs::new(pool.clone(), redis.clone(), &cfg);
    let cipher = stasis_shared::secrets::load(&cfg.secrets, &pool)
        .await
        .map_err(std::io::Error::other)?;
    let name = process::instance_name();
    let ctx = Arc::new(WorkerContext {
        leases: Leases::for_worker(redis.clone(), &cfg.queue.namespace, &name),
        slots: Slots::new(
            redis.clone(),
            &cfg.queue.namespace,
            cfg.sync.max_concurrent,
            cfg.sync.max_per_host,
        )
        .for_worker(&name),
        redis: redis.clone(),
        cfg: cfg.clone(),
        pool,
        jobs: job_service,
        cipher,
        name: name.clone(),
        permits: SyncPermits::new(concurrency),
        syncs: Arc::default(),
        storages: cfg.worker.served_storages(&cfg.storage),
    });
    metrics::gauge!("stasis_worker_concurrency").set(concurrency as f64);
    info!(worker = %name, concurrency, storages = ?ctx.storages, "worker starting");

    let (registry_pool, registry_name) = (ctx.pool.clone(), name.clone());
    let outage = Arc::new(Outage::new("redis"));
    let alive = Liveness {
        redis: redis.clone(),
        key: liveness::key(&cfg.queue.namespace, &name),
        window: cfg.queue.liveness_window(),
        outage: outage.clone(),
    };
    // alive before the first lease is taken, or another worker would take it over
    alive.beat().await;
    // two loops: a backend that hangs must not delay the other's beat
    let heartbeat = tokio::spawn(register(
        registry_pool.clone(),
        registry_name.clone(),
        concurrency,
        cfg.queue.heartbeat_interval,
    ));
    let alive_beat = tokio::spawn(alive.clone().keep(cfg.queue.heartbeat_interval));
    let disk_watch = tokio::spawn(crate::disk::watch(
        ctx.clone(),
        cfg.queue.heartbeat_interval,
    ));
    // Workers offer to dispatch too: retries and postponed deliveries keep moving with
    // no scheduler running (one process at a time holds the dispatcher's lease).
    let stop_dispatching = tokio_util::sync::CancellationToken::new();
    let dispatcher = tokio::spawn(stasis_shared::jobs::dispatch_loop(
        ctx.jobs.clone(),
        cfg.queue.dispatch_interval,
        stop_dispatching.clone(),
    ));

    // One consumer per lane of each storage served; the context's permits keep the
    // process at its concurrency across all of them, so a "Sync now" waits at most for
    // the syncs this worker already holds, never for the scheduled backlog, and storages
    // share the permits fairly. Each consumer takes twice that many deliveries: the
    // extra ones do their queue and lock bookkeeping while the syncs run.
    let in_flight = concurrency * 2;
    let lanes = ctx
        .storages
        .iter()
        .flat_map(|storage| Lane::ALL.map(|lane| (storage.clone(), lane)));
    let monitor = lanes.fold(Monitor::new(), |monitor, (storage, lane)| {
        let (redis, queue_cfg, ctx, name) =
            (redis.clone(), cfg.queue.clone(), ctx.clone(), name.clone());
        monitor.register(move |restarts| {
            let backend: queue::ConsumerStorage =
                queue::storage(redis.clone(), &queue_cfg, &storage, lane, in_flight);
            let backend = backend.poll_with_interval(queue_cfg.poll_interval);
            // A restarted worker needs a fresh name: apalis refuses a live-looking one.
            WorkerBuilder::new(format!("{name}-{storage}-{}-{restarts}", lane.suffix()))
                .backend(backend)
                .data(ctx.clone())
                .concurrency(in_flight)
                .build(handler::handle)
        })
    });
    let monitor = monitor
        // Any backend error (Redis restart, timeout, undecodable payload) ends an apalis
        // worker for good; the monitor brings it back instead.
        // While Redis is away they stop on every poll: the outage is logged once, and
        // its end when the liveness beat gets through again.
        .should_restart(move |worker, error| {
            if outage.is_on() {
                debug!(worker = worker.name(), %error, "queue consumer stopped; restarting it");
            } else {
                outage.failed(&format!("queue consumer {}", worker.name()), error);
            }
            metrics::counter!("stasis_worker_restarts_total").increment(1);
            true
        })
        // Starts counting when the shutdown signal arrives. In-flight syncs get `grace`,
        // then are stopped; the rest is for them to record their runs as interrupted,
        // requeue their jobs and release their locks.
        .with_terminator(async move { tokio::time::sleep(grace + STOPPED_SYNCS_SETTLE).await });
    let syncs = ctx.syncs.clone();
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            info!("shutdown requested: finishing in-flight syncs");
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                syncs.stop_all();
            });
            Ok(())
        })
        .await;
    stop_dispatching.cancel();
    let _ = dispatcher.await;
    heartbeat.abort();
    alive_beat.abort();
    disk_watch.abort();
    if let Err(e) = liveness::leave(&alive.redis, &alive.key).await {
        warn!(error = %e, "could not clear the worker's liveness key; it expires on its own");
    }
    if let Err(e) = workers::leave(&registry_pool, &registry_name).await {
        warn!(error = %e, "could not leave the worker registry; the entry goes stale");
    }
    if let Err(e) = storages::leave(&registry_pool, &registry_name).await {
        warn!(error = %e, "could not withdraw the worker's storage reports; they go stale");
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// This worker's liveness key in Redis (see `stasis_shared::liveness`).
#[derive(Clone)]
struct Liveness {
    redis: ConnectionManager,
    key: String,
    window: std::time::Duration,
    /// Redis away: the beat is what notices it is back.
    outage: Arc<Outage>,
}

impl Liveness {
    async fn beat(&self) {
        match liveness::beat(&self.redis, &self.key, self.window).await {
            Ok(_) => {
                self.outage.succeeded();
            }
            Err(e) => {
                self.outage.failed("worker heartbeat", &e);
            }
        }
    }

    async fn keep(self, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.beat().await;
        }
    }
}

/// Keeps this process's row in the worker registry fresh, where operators and the
/// scheduler look: the scheduler re-runs the jobs of a worker whose row and liveness
/// key in Redis have both lapsed, so an outage of one backend alone costs no sync.
async fn register(pool: PgPool, name: String, concurrency: usize, every: std::time::Duration) {
    let host = process::hostname();
    let me = workers::Registration {
        name: &name,
        host: &host,
        pid: std::process::id(),
        concurrency,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match workers::beat(&pool, &me).await {
            Ok(()) => metrics::counter!("stasis_worker_heartbeats_total").increment(1),
            Err(e) => warn!(error = %e, "worker heartbeat to Postgres failed"),
        }
    }
}
