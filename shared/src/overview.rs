//! The operator's view of the whole queue, assembled from Postgres (job states, history,
//! worker registry, run-time settings) and Redis (deliveries, scheduler leader). The API's
//! `/admin/queue` and `stasisctl queue` both show exactly this.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

use crate::db::workers::{self, WorkerRow};
use crate::db::{jobs, runs, settings};
use crate::domain::JobState;
use crate::queue::{self, RedisDepth};
use crate::scheduler_status;
use crate::{Config, Result};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueOverview {
    /// Jobs per state in Postgres, every state listed.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub jobs: BTreeMap<&'static str, i64>,
    /// States with more than 10,000 jobs, whose count is Postgres's estimate (as of its
    /// last `ANALYZE`): counting them exactly would read the whole table.
    pub jobs_estimated: Vec<JobState>,
    /// Deliveries in Redis.
    pub redis: RedisDepth,
    /// The same, per lane (`priority`, `scheduled`).
    #[schema(value_type = std::collections::BTreeMap<String, RedisDepth>)]
    pub redis_lanes: BTreeMap<&'static str, RedisDepth>,
    pub oldest_pending_age_seconds: Option<f64>,
    /// Attempts finished in the last minute and hour.
    pub throughput: Throughput,
    pub workers: Vec<WorkerRow>,
    pub scheduler: SchedulerView,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Throughput {
    pub last_1m: i64,
    pub last_1h: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SchedulerView {
    /// `mirror.enabled` as the leading scheduler has it (scheduled syncs on or off);
    /// `None` while no scheduler leads.
    pub enabled: Option<bool>,
    pub paused: bool,
    /// `None` when no scheduler holds the leadership.
    pub leader: Option<String>,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub next_tick_at: Option<DateTime<Utc>>,
    pub sync_interval: SyncInterval,
}

/// The default interval between syncs and where it comes from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncInterval {
    pub seconds: u64,
    /// Human form, e.g. `1h 30m`.
    pub human: String,
    /// `override` (set at run time) or `config` (`mirror.sync_interval`).
    pub source: &'static str,
}

impl SyncInterval {
    pub async fn current(cfg: &Config, pool: &PgPool) -> sqlx::Result<Self> {
        let set = settings::sync_interval(pool).await?;
        let interval = set.unwrap_or(cfg.mirror.sync_interval);
        Ok(Self {
            seconds: interval.as_secs(),
            human: humantime::format_duration(interval).to_string(),
            source: if set.is_some() { "override" } else { "config" },
        })
    }
}

/// A worker counts as alive while its registry heartbeat is this recent.
pub fn alive_window(cfg: &Config) -> Duration {
    cfg.queue.heartbeat_interval * 3
}

pub async fn queue_overview(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
) -> Result<QueueOverview> {
    let (counts, oldest) = jobs::depth(pool).await?;
    let mut by_state: BTreeMap<&'static str, i64> =
        JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut estimated = Vec::new();
    for c in counts {
        by_state.insert(c.state.as_str(), c.count);
        if c.estimated {
            estimated.push(c.state);
        }
    }
    let (last_1m, last_1h) = runs::throughput(pool).await?;
    let status = scheduler_status::read(redis, &cfg.queue.namespace).await?;
    let lanes = queue::lane_depths(redis, &queue::Lanes::of(cfg)).await?;
    Ok(QueueOverview {
        jobs: by_state,
        jobs_estimated: estimated,
        redis: RedisDepth::total(&lanes),
        redis_lanes: lanes.into_iter().map(|(l, d)| (l.name(), d)).collect(),
        oldest_pending_age_seconds: oldest,
        throughput: Throughput { last_1m, last_1h },
        workers: workers::alive(pool, alive_window(cfg)).await?,
        scheduler: SchedulerView {
            enabled: status.as_ref().map(|s| s.enabled),
            paused: settings::scheduler_paused(pool).await?,
            leader: status.as_ref().map(|s| s.leader.clone()),
            last_tick_at: status.as_ref().and_then(|s| s.last_tick_at),
            next_tick_at: status.as_ref().and_then(|s| s.next_tick_at),
            sync_interval: SyncInterval::current(cfg, pool).await?,
        },
    })
}
