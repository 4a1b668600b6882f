//! Gauges of the whole system, sampled by the scheduler leader alone: Postgres and Redis
//! are asked once per interval, however many processes run, and dashboards read one
//! series per state instead of adding up copies. A scheduler exports them only while
//! it leads: the exporter drops a gauge nobody set for `telemetry::LEADER_GAUGES_TTL`
//! (three samples), so a former leader, even one frozen and resumed, does not keep
//! publishing the values it had.

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::{jobs, repos, settings, storages, workers};
use stasis_shared::domain::SyncStatus;
use stasis_shared::overview::alive_window;
use stasis_shared::queue;
use stasis_shared::Config;

use crate::error::SchedulerError;

pub async fn sample(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
) -> Result<(), SchedulerError> {
    let paused = settings::scheduler_paused(pool).await?;
    metrics::gauge!("stasis_scheduler_paused").set(if paused { 1.0 } else { 0.0 });

    let default_interval = settings::sync_interval(pool)
        .await?
        .unwrap_or(cfg.mirror.sync_interval);
    let (overdue, oldest_overdue) =
        crate::freshness::overdue(pool, default_interval, cfg.mirror.min_sync_interval).await?;
    metrics::gauge!("stasis_mirrors_overdue").set(overdue as f64);
    metrics::gauge!("stasis_mirrors_oldest_overdue_seconds").set(oldest_overdue);

    let (states, oldest) = jobs::depth(pool).await?;
    // past 10,000 jobs a state's figure is Postgres's estimate (see `jobs::DEPTH`)
    for c in states {
        metrics::gauge!("stasis_queue_jobs", "state" => c.state.as_str()).set(c.count as f64);
    }
    metrics::gauge!("stasis_queue_oldest_job_age_seconds").set(oldest.unwrap_or(0.0));

    let depth = queue::redis_depth(redis, &queue::Lanes::of(cfg)).await?;
    for (location, n) in [
        ("scheduled", depth.scheduled),
        ("ready", depth.active),
        ("inflight", depth.inflight),
        ("dead", depth.dead),
    ] {
        metrics::gauge!("stasis_queue_redis_jobs", "location" => location).set(n as f64);
    }

    let alive = workers::alive(pool, alive_window(cfg)).await?;
    metrics::gauge!("stasis_workers_alive").set(alive.len() as f64);

    let mirrors = repos::mirrors_by_status(pool).await?;
    for status in SyncStatus::ALL {
        let n = count(&mirrors, *status);
        metrics::gauge!("stasis_mirrors", "sync_status" => status.as_str()).set(n as f64);
    }
    // per storage, never per mirror: a label per mirror would be thousands of series
    let names = cfg.storage.names();
    for state in storages::states(pool, &names, cfg.queue.liveness_window()).await? {
        let storage = state.name.clone();
        metrics::gauge!("stasis_mirror_storage_bytes", "storage" => storage.clone())
            .set(state.bytes as f64);
        metrics::gauge!("stasis_storage_mirrors", "storage" => storage.clone())
            .set(state.mirrors as f64);
        metrics::gauge!("stasis_storage_live_workers", "storage" => storage)
            .set(state.live_workers as f64);
    }
    let moves = storages::move_counts(pool).await?;
    for state in ["pending", "running", "failed"] {
        let n = count(&moves, state.to_owned());
        metrics::gauge!("stasis_storage_moves", "state" => state).set(n as f64);
    }
    let lfs_missing = stasis_shared::db::lfs_missing::total(pool).await?;
    metrics::gauge!("stasis_lfs_missing_objects").set(lfs_missing as f64);
    Ok(())
}

fn count<K: PartialEq>(rows: &[(K, i64)], key: K) -> i64 {
    rows.iter().find(|(k, _)| *k == key).map_or(0, |(_, n)| *n)
}
