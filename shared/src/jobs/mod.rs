//! The job service: what opens a sync job in Postgres (the record), answers a request
//! that finds one already there (coalesced, or owed a follow-up), and admits jobs to
//! their Redis lane ([`admission`]); an operator's retry and discard; the postponement of
//! a delivery that cannot run now. The lanes themselves are the transport in
//! [`crate::queue`].

use std::time::Duration;

use apalis::prelude::TaskSink;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use uuid::Uuid;

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::db::coalesce;
pub use crate::db::coalesce::Window;
use crate::db::jobs;
use crate::db::recovery;
use crate::db::repos;
use crate::db::waiting;
use crate::domain::lifecycle::opening::{self, Opened};
use crate::domain::lifecycle::operator::{self, Refused};
use crate::domain::{JobState, Lane, SyncMirror, SyncReason};
use crate::error::{Error, Result};
use crate::queue::{mark, marked, once_more, storage, JobStorage, Lanes};

mod admission;

pub use admission::{dispatch_loop, Bounds};

/// Removes every waiting delivery of one job (its payload names the job id) from the
/// scheduled set and the active list, with its data, in one atomic step: an id left in
/// a list without its data would poison the next fetch. O(backlog), which
/// `queue.max_backlog` bounds; it runs only on an operator's discard.
const DROP_DELIVERIES: &str = r#"
local removed = 0
local function forget(id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('DEL', KEYS[4] .. ':' .. id)
  removed = removed + 1
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local data = redis.call('HGET', KEYS[3], id)
  if data and string.find(data, ARGV[1], 1, true) then
    redis.call('ZREM', KEYS[1], id)
    forget(id)
  end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local data = redis.call('HGET', KEYS[3], id)
  if data and string.find(data, ARGV[1], 1, true) then
    redis.call('LREM', KEYS[2], 0, id)
    forget(id)
  end
end
return removed
"#;

/// Most deliveries one pipelined push carries: each push must answer well within
/// `redis.response_timeout`, or it fails after Redis applied it (and a retry duplicates).
const PUSH_AT_ONCE: usize = 500;

/// What the caller gets back from [`Jobs::request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub job_id: Uuid,
    /// `false` when the repository already had a pending or running job.
    pub created: bool,
    /// When the job is due: later than now when it waits out `min_manual_interval`.
    pub run_at: chrono::DateTime<chrono::Utc>,
    /// The repository's job was running: a follow-up sync runs when it ends.
    pub follow_up: bool,
    /// Due, but waiting in Postgres for room in its lane (or for Redis to be back).
    pub waiting: bool,
}

#[derive(Clone)]
pub struct Jobs {
    pool: PgPool,
    redis: ConnectionManager,
    namespace: String,
    /// Every storage's two lanes, and the queue each is pushed to.
    lanes: Lanes,
    queues: std::sync::Arc<HashMap<(String, Lane), JobStorage>>,
    max_attempts: i32,
    /// `queue.max_priority_backlog`, `queue.max_backlog`.
    bounds: admission::Bounds,
    /// One admission at a time in this process: each reads the room it fills, so two at
    /// once would both fill it. Processes still race, by at most one admission each.
    admitting: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Jobs {
    pub fn new(pool: PgPool, redis: ConnectionManager, cfg: &Config) -> Self {
        let lanes = Lanes::of(cfg);
        let queues = lanes
            .all()
            .into_iter()
            .map(|of| {
                let queue = storage(redis.clone(), &cfg.queue, &of.storage, of.lane, 1);
                ((of.storage, of.lane), queue)
            })
            .collect();
        Self {
            pool,
            redis,
            namespace: cfg.queue.namespace.clone(),
            lanes,
            queues: std::sync::Arc::new(queues),
            max_attempts: cfg.sync.max_attempts as i32,
            bounds: admission::Bounds::from(&cfg.queue),
            admitting: std::sync::Arc::default(),
        }
    }

    /// The queue deliveries of `storage`'s `lane` are pushed to; `None` for a storage
    /// that is not configured.
    pub fn queue(&self, storage: &str, lane: Lane) -> Option<&JobStorage> {
        self.queues.get(&(storage.to_owned(), lane))
    }

    /// Every lane of every configured storage.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Records a job for the repository and admits it to its lane, unless one is
    /// already pending or running, in which case that job is returned (a running one
    /// owes a follow-up sync). `None`: no such repository. Once this returns the request
    /// is recorded in Postgres and will run: a lane without room, or a Redis that is
    /// down, leaves the job waiting for the dispatcher instead of failing it.
    pub async fn request(&self, repo_id: Uuid, reason: SyncReason) -> Result<Option<Requested>> {
        self.request_within(repo_id, reason, Window::None).await
    }

    /// [`Self::request`], coalesced per `window`.
    pub async fn request_within(
        &self,
        repo_id: Uuid,
        reason: SyncReason,
        window: Window,
    ) -> Result<Option<Requested>> {
        // Most requests for a busy repository find its job already there: one read answers
        // them, without the row lock that serialises creating a job (and that every
        // "Sync now" of a hot repository would otherwise queue on).
        if let Some(active) = coalesce::active(&self.pool, repo_id).await? {
            metrics::counter!("stasis_jobs_deduplicated_total").increment(1);
            return self.found(active, reason, window).await.map(Some);
        }
        let mut tx = self.pool.begin().await?;
        let Some(opened) = opening::open(&mut tx, repo_id, reason, self.max_attempts).await? else {
            return Ok(None);
        };
        let job_id = match opened {
            Opened::New(job_id) => job_id,
            // a concurrent request created it between the read above and the lock
            Opened::Existing(_) => {
                drop(tx);
                return match coalesce::active(&self.pool, repo_id).await? {
                    Some(active) => self.found(active, reason, window).await.map(Some),
                    None => Ok(None),
                };
            }
        };
        let run_at = match window {
            Window::Min(gap) if !gap.is_zero() => {
                coalesce::defer(&mut tx, job_id, repo_id, gap).await?
            }
            _ => chrono::Utc::now(),
        };
        self.mark_new().await;
        tx.commit().await?;
        metrics::counter!("stasis_jobs_enqueued_total", "reason" => reason.as_str()).increment(1);
        let job = SyncMirror {
            job_id,
            repo_id,
            reason,
        };
        let waiting = run_at <= chrono::Utc::now() && self.admit_promptly(vec![job]).await == 0;
        Ok(Some(Requested {
            job_id,
            created: true,
            run_at,
            follow_up: false,
            waiting,
        }))
    }

    /// Opens a job for a repository the caller's transaction creates (an import), so
    /// that both are recorded or neither is; once committed, the caller [`admits`] it.
    /// `None`: the repository already had a pending or running job.
    ///
    /// [`admits`]: Self::admit
    pub async fn open_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        repo_id: Uuid,
        reason: SyncReason,
    ) -> Result<Option<SyncMirror>> {
        let Some(Opened::New(job_id)) =
            opening::open(tx, repo_id, reason, self.max_attempts).await?
        else {
            return Ok(None);
        };
        self.mark_new().await;
        metrics::counter!("stasis_jobs_enqueued_total", "reason" => reason.as_str()).increment(1);
        Ok(Some(SyncMirror {
            job_id,
            repo_id,
            reason,
        }))
    }

    /// A request that found the repository's job: a pending one absorbs it (it has yet
    /// to list the upstream's refs); a running one owes a follow-up sync when it ends.
    async fn found(
        &self,
        active: coalesce::Active,
        reason: SyncReason,
        window: Window,
    ) -> Result<Requested> {
        let job_id = active.id;
        let mut run_at = active.run_at;
        let mut waiting = false;
        if active.pending {
            let mut in_queue = active.in_queue;
            // A Redis that cannot be asked is not taken for one that lost its data: the
            // dispatcher and the leader's recovery see to the job once it is back.
            let lost = in_queue
                && !active.undelivered
                && tokio::time::timeout(admission::PROMPT, self.redis_lost_data())
                    .await
                    .is_ok_and(|lost| lost.unwrap_or(false));
            if (active.undelivered || lost) && recovery::forget_delivery(&self.pool, job_id).await?
            {
                // its delivery may be gone with Redis's data: it gets a fresh one
                in_queue = false;
            }
            if window == Window::Force && coalesce::advance(&self.pool, job_id).await? {
                run_at = chrono::Utc::now();
                in_queue = false;
            }
            let job = SyncMirror {
                job_id,
                repo_id: active.repo_id,
                reason: active.reason,
            };
            if run_at <= chrono::Utc::now() && !in_queue {
                waiting = self.admit_promptly(vec![job]).await == 0;
            }
        }
        let follow_up = !active.pending
            && reason != SyncReason::Scheduled
            && coalesce::follow_up(&self.pool, job_id, reason, window).await?;
        Ok(Requested {
            job_id,
            created: false,
            run_at,
            follow_up,
            waiting,
        })
    }

    /// A Redis nobody marked yet (a new deployment) is marked before a new job is
    /// visible: a request finding the job must not take the missing marker for lost data.
    /// Bounded: a Redis that is down or frozen leaves the job waiting for the dispatcher.
    async fn mark_new(&self) {
        match tokio::time::timeout(admission::PROMPT, mark(&self.redis, &self.namespace, true))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "could not mark the delivery epoch"),
            Err(_) => tracing::debug!("Redis did not answer; the delivery epoch is not marked"),
        }
    }

    /// Whether Redis lost its data since the last epoch was marked; if so a new epoch
    /// starts here (the scheduler leader re-delivers the rest of the pending jobs).
    async fn redis_lost_data(&self) -> Result<bool> {
        if marked(&self.redis, &self.namespace).await? {
            return Ok(false);
        }
        let epoch = recovery::next_epoch(&self.pool).await?;
        mark(&self.redis, &self.namespace, false).await?;
        tracing::warn!(epoch, "Redis lost data: a new delivery epoch starts");
        Ok(true)
    }

    /// An operator's retry of a failed or dead job: back to pending in Postgres with a
    /// fresh allowance of attempts, admitted to its lane or waiting for room there.
    pub async fn retry(&self, job_id: Uuid) -> Result<Result<(), Refused>> {
        if let Err(refused) = operator::retry(&self.pool, job_id, self.max_attempts).await? {
            return Ok(Err(refused));
        }
        match jobs::find(&self.pool, job_id).await? {
            Some(job) => {
                let delivery = SyncMirror {
                    job_id,
                    repo_id: job.repo_id,
                    reason: job.reason,
                };
                self.admit_promptly(vec![delivery]).await;
            }
            // deleted with its repository meanwhile
            None => return Ok(Err(Refused::NotFound)),
        }
        metrics::counter!("stasis_jobs_retried_total").increment(1);
        Ok(Ok(()))
    }

    /// An operator's discard: the job becomes `dead` in Postgres (so any delivery still
    /// in flight is dropped by the worker) and its waiting deliveries leave Redis.
    /// Returns the state it had and how many deliveries were removed.
    pub async fn discard(&self, job_id: Uuid) -> Result<Result<(JobState, u64), Refused>> {
        let previous = match operator::discard(&self.pool, job_id).await? {
            Ok(state) => state,
            Err(refused) => return Ok(Err(refused)),
        };
        let removed = self.drop_deliveries(job_id).await?;
        metrics::counter!("stasis_jobs_discarded_total").increment(1);
        Ok(Ok((previous, removed)))
    }

    /// Removes the job's deliveries still waiting in Redis, in any lane; returns how
    /// many.
    pub async fn drop_deliveries(&self, job_id: Uuid) -> Result<u64> {
        let mut removed = 0;
        for queue in self.queues.values() {
            let mut storage = queue.clone();
            let config = storage.get_config().clone();
            let n: u64 = redis::Script::new(DROP_DELIVERIES)
                .key(config.scheduled_jobs_set())
                .key(config.active_jobs_list())
                .key(config.job_data_hash())
                .key(config.job_meta_hash())
                .arg(job_id.to_string())
                .invoke_async(storage.get_connection())
                .await?;
            removed += n;
        }
        Ok(removed)
    }

    /// A delivery that cannot run now ends; its job waits in Postgres for `delay` and is
    /// then delivered afresh (see [`waiting::postpone`]).
    pub async fn postpone(&self, job_id: Uuid, delay: Duration) -> Result<()> {
        waiting::postpone(&self.pool, job_id, delay).await?;
        Ok(())
    }

    /// Pushes deliveries of jobs already claimed for their lane, one round trip per lane.
    /// The admission point's last step ([`Self::admit`], the dispatcher, the scheduler's
    /// waves): whoever calls it has taken room under the lane's bound first.
    pub async fn push(&self, jobs: Vec<SyncMirror>) -> Result<()> {
        for ((route, lane), jobs) in self.routed(jobs).await? {
            let storage = self.queue(&route, lane).ok_or_else(|| unknown(&route))?;
            for chunk in jobs.chunks(PUSH_AT_ONCE) {
                once_more(|| {
                    let (mut storage, jobs) = (storage.clone(), chunk.to_vec());
                    async move { storage.push_bulk(jobs).await }
                })
                .await
                .map_err(|e| Error::Push(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// `jobs` by the lane each goes to: its reason's lane of the storage its mirror's
    /// jobs go to (see [`repos::Repo::route`]). One query, skipped with one storage.
    async fn routed(
        &self,
        jobs: Vec<SyncMirror>,
    ) -> Result<BTreeMap<(String, Lane), Vec<SyncMirror>>> {
        let mut routed: BTreeMap<(String, Lane), Vec<SyncMirror>> = BTreeMap::new();
        if let [only] = self.lanes.storages.as_slice() {
            for job in jobs {
                routed
                    .entry((only.clone(), job.reason.lane()))
                    .or_default()
                    .push(job);
            }
            return Ok(routed);
        }
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.repo_id).collect();
        let routes: HashMap<Uuid, String> = repos::routes(&self.pool, &ids).await?;
        for job in jobs {
            // a repository deleted meanwhile took its jobs with it: nothing to deliver, and
            // no lane to guess (the default storage may not be configured at all)
            let Some(route) = routes.get(&job.repo_id).cloned() else {
                continue;
            };
            routed
                .entry((route, job.reason.lane()))
                .or_default()
                .push(job);
        }
        Ok(routed)
    }
}

fn unknown(storage: &str) -> Error {
    Error::Storage(format!(
        "a mirror is on storage `{storage}`, which is not configured"
    ))
}
