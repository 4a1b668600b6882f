//! One scheduler tick: claim due mirrors in Postgres and push them to Redis in waves
//! that keep the queue's backlog under `queue.max_backlog`.

use std::time::Instant;

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::jobs;
use stasis_shared::domain::{SyncMirror, SyncReason};
use stasis_shared::queue::{self, Enqueuer};
use stasis_shared::Config;

use crate::error::SchedulerError;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub enqueued: u64,
    pub waves: u32,
    /// The backlog bound stopped this tick early: more mirrors are due.
    pub backlog_full: bool,
}

pub async fn enqueue_due(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
    enqueuer: &Enqueuer,
) -> Result<TickReport, SchedulerError> {
    let started = Instant::now();
    let mut report = TickReport::default();
    loop {
        let backlog = queue::backlog(redis, &cfg.queue.namespace).await?;
        let room = cfg.queue.max_backlog.saturating_sub(backlog);
        if room == 0 {
            report.backlog_full = true;
            break;
        }
        let limit = room.min(u64::from(cfg.scheduler.batch_size)) as i64;
        let claimed = jobs::claim_due(pool, limit, cfg.sync.max_attempts as i32).await?;
        if claimed.is_empty() {
            break;
        }
        let count = claimed.len();
        let deliveries = claimed
            .iter()
            .map(|&(job_id, repo_id)| SyncMirror {
                job_id,
                repo_id,
                reason: SyncReason::Scheduled,
            })
            .collect();
        if let Err(e) = enqueuer.push(deliveries).await {
            let ids: Vec<_> = claimed.iter().map(|(job, _)| *job).collect();
            jobs::unclaim(pool, &ids).await?;
            return Err(e.into());
        }
        report.enqueued += count as u64;
        report.waves += 1;
        if (count as i64) < limit {
            break;
        }
    }
    metrics::counter!("stasis_scheduler_ticks_total").increment(1);
    metrics::counter!("stasis_jobs_enqueued_total", "reason" => "scheduled")
        .increment(report.enqueued);
    metrics::histogram!("stasis_scheduler_enqueue_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(report)
}
