//! Repairs what nothing else would move again (the stuck states GitLab's and Gitea's
//! mirror queues are known for): a job running long past any sync with its repository
//! lock free (its worker died, and its delivery may be gone with a Redis that lost its
//! data), pending jobs long due while Redis holds no delivery at all, and mirrors shown
//! as queued or syncing with no job behind them. Duplicate deliveries are harmless:
//! workers drop those of finished jobs and serialise the rest on the repository lock.

use redis::aio::ConnectionManager;
use sqlx::PgPool;
use stasis_shared::db::{jobs, repos, waiting};
use stasis_shared::domain::lifecycle::rescue;
use stasis_shared::domain::{SyncMirror, SyncReason};
use stasis_shared::lock::Leases;
use stasis_shared::Config;
use stasis_shared::{jobs::Jobs, queue};

use crate::error::SchedulerError;

/// Rows looked at per kind and pass: a pass stays short, the next one continues.
const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Running jobs sent back to pending with a fresh delivery.
    pub running: u64,
    /// Pending jobs given a fresh delivery.
    pub pending: u64,
    /// Mirrors stuck as queued/syncing that got a new job.
    pub repositories: u64,
}

pub async fn reap(
    cfg: &Config,
    pool: &PgPool,
    redis: &ConnectionManager,
    job_service: &Jobs,
) -> Result<Reaped, SchedulerError> {
    let stuck = cfg.scheduler.stuck_after;
    let leases = Leases::new(redis.clone(), &cfg.queue.namespace);
    let mut reaped = Reaped::default();

    // A job recorded as in its lane, long due, whose delivery Redis does not hold (its
    // process died between claiming and pushing it) waits for a fresh one. Redis holds
    // no more than the lanes' bounds and the workers' in-flight deliveries, so reading
    // them all is cheap.
    let mut redeliver = Vec::new();
    let claimed = waiting::in_queue_since(pool, stuck, BATCH).await?;
    if !claimed.is_empty() {
        let present = queue::delivered_jobs(redis, &queue::Lanes::of(cfg)).await?;
        let lost: Vec<_> = claimed
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        waiting::unclaim(pool, &lost).await?;
        reaped.pending += lost.len() as u64;
    }

    for (job_id, repo_id, reason) in jobs::running_since(pool, stuck, BATCH).await? {
        // a live sync renews its lock: leave it alone however long it takes
        if leases.is_held(&leases.repo_key(repo_id)).await? {
            continue;
        }
        if rescue::requeue_running(pool, job_id).await? {
            reaped.running += 1;
            redeliver.push(delivery(job_id, repo_id, reason));
        }
    }
    if !redeliver.is_empty() {
        job_service.admit(&redeliver).await;
    }

    for repo_id in repos::stuck_without_job(pool, stuck, BATCH).await? {
        if job_service
            .request(repo_id, SyncReason::Scheduled)
            .await?
            .is_some()
        {
            reaped.repositories += 1;
        }
    }
    for (kind, n) in [
        ("running", reaped.running),
        ("pending", reaped.pending),
        ("repository", reaped.repositories),
    ] {
        metrics::counter!("stasis_jobs_reaped_total", "kind" => kind).increment(n);
    }
    Ok(reaped)
}

/// A fresh delivery of a job as Postgres records it; its reason keeps it in its lane, so
/// a rescued "Sync now" stays ahead.
pub(crate) fn delivery(job_id: uuid::Uuid, repo_id: uuid::Uuid, reason: SyncReason) -> SyncMirror {
    SyncMirror {
        job_id,
        repo_id,
        reason,
    }
}
