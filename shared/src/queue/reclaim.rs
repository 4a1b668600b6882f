//! Keeps Redis down to what is in flight. apalis-redis 1.0 keeps every finished delivery
//! forever: its acknowledgement (`handle_results.lua`) adds the id to the lane's `done`
//! set (or `dead` set), writes the outcome into the delivery's `:meta:<id>` hash and
//! leaves its payload in the `data` hash, none of it with an expiry. Postgres records
//! what each job did, so nothing of a finished delivery is needed here: a sweep removes
//! all three for every done delivery, and keeps the newest `queue.max_dead` dead ones
//! (operators list them and are alerted on them) with their payloads.
//!
//! The sweep runs after the fact, not at the acknowledgement: apalis acknowledges in
//! batches on its own task, after the handler returned, and rewrites the meta hash as it
//! does, so a handler cannot remove its own delivery.
//!
//! Only ids taken from the done and dead sets are touched. A delivery waiting (the
//! `scheduled` set, the `active` list, a retry's backoff) or taken by a worker (its
//! in-flight set) is in none of them: apalis moves an id out of the worker's in-flight
//! set in the same script that files it as done or dead, and an id filed there is never
//! fetched again.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::Lanes;

/// How much one sweep may remove per lane. Each batch is one script, so Redis is never
/// blocked for more than a batch; the pass stops after `batches` so a large leftover
/// (a first sweep over years of history) drains over several passes instead of holding
/// the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deliveries removed by one script.
    pub batch: usize,
    /// Scripts per lane and pass.
    pub batches: usize,
}

impl Default for Limits {
    /// 500 ids are about a millisecond of Redis time; 40 batches a pass is 20,000
    /// deliveries per lane, far above what a fleet finishes between passes.
    fn default() -> Self {
        Self {
            batch: 500,
            batches: 40,
        }
    }
}

/// What a sweep removed, both lanes together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Done deliveries removed (id, payload and meta hash).
    pub done: u64,
    /// Dead deliveries past `queue.max_dead` removed, oldest first.
    pub dead: u64,
    /// Registration hashes of consumers that are gone.
    pub workers: u64,
}

/// Takes up to ARGV[1] ids out of the done set and deletes their payloads and meta
/// hashes. SPOP removes the ids it returns, so two sweeps at once never share one.
const SWEEP_DONE: &str = r#"
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
if #ids == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(ids))
local metas = {}
for i, id in ipairs(ids) do metas[i] = KEYS[3] .. ':' .. id end
redis.call('DEL', unpack(metas))
return #ids
"#;

/// Removes the given ids from the dead set, with their payloads and meta hashes; an id
/// that is no longer in the dead set (removed meanwhile) is left alone.
const TRIM_DEAD: &str = r#"
local removed = 0
for _, id in ipairs(ARGV) do
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', KEYS[3] .. ':' .. id)
    removed = removed + 1
  end
end
return removed
"#;

/// Deletes a consumer's registration hash unless the consumer is registered again.
const FORGET_WORKER: &str = r#"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[2])
"#;

/// One sweep of every lane: done deliveries removed, dead ones trimmed to `max_dead`.
pub async fn sweep(
    conn: &ConnectionManager,
    lanes: &Lanes,
    limits: Limits,
    max_dead: u64,
) -> redis::RedisResult<Swept> {
    let mut swept = Swept::default();
    for of in lanes.all() {
        let q = of.queue;
        swept.done += sweep_done(conn, &q, limits).await?;
        swept.dead += trim_dead(conn, &q, limits, max_dead).await?;
    }
    Ok(swept)
}

async fn sweep_done(conn: &ConnectionManager, q: &str, limits: Limits) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let script = redis::Script::new(SWEEP_DONE);
    let mut removed = 0;
    for _ in 0..limits.batches {
        let n: u64 = script
            .key(format!("{q}:done"))
            .key(format!("{q}:data"))
            .key(format!("{q}:meta"))
            .arg(limits.batch.max(1))
            .invoke_async(&mut conn)
            .await?;
        removed += n;
        if n < limits.batch.max(1) as u64 {
            break;
        }
    }
    Ok(removed)
}

/// Trims the dead set to its newest `max_dead` deliveries. Delivery ids are ULIDs,
/// whose text sorts by creation time (to the millisecond), so the oldest are the
/// smallest. The set is read only when over the cap, and then in SSCAN steps: each pass
/// trims it back, so what is read is the cap plus what died since the last pass.
async fn trim_dead(
    conn: &ConnectionManager,
    q: &str,
    limits: Limits,
    max_dead: u64,
) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let dead = format!("{q}:dead");
    let size: u64 = conn.scard(&dead).await?;
    if size <= max_dead {
        return Ok(0);
    }
    let mut ids: Vec<String> = Vec::with_capacity(size as usize);
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&dead)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        ids.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let excess = ids.len().saturating_sub(max_dead as usize);
    let allowed = limits.batch.max(1) * limits.batches;
    let script = redis::Script::new(TRIM_DEAD);
    let mut removed = 0;
    for chunk in ids[..excess.min(allowed)].chunks(limits.batch.max(1)) {
        let n: u64 = script
            .key(&dead)
            .key(format!("{q}:data"))
            .key(format!("{q}:meta"))
            .arg(chunk)
            .invoke_async(&mut conn)
            .await?;
        removed += n;
    }
    Ok(removed)
}

/// Deletes the registration hash (`<queue>:workers:metadata:<consumer>`) of every
/// consumer no longer in its lane's workers set. apalis writes one per consumer name and
/// never deletes it; our consumers take a new name per process and per restart, and
/// apalis drops a consumer from the workers set once its heartbeats stop. This walks the
/// keyspace (SCAN), so it runs rarely: see [`Reclaimer`].
pub async fn forget_gone_workers(
    conn: &ConnectionManager,
    lanes: &Lanes,
) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let script = redis::Script::new(FORGET_WORKER);
    let mut removed = 0;
    for of in lanes.all() {
        let q = of.queue;
        let prefix = format!("{q}:workers:metadata:");
        let keys: Vec<String> = {
            let mut iter = conn
                .scan_options::<String>(
                    redis::ScanOptions::default()
                        .with_pattern(format!("{prefix}*"))
                        .with_count(1000),
                )
                .await?;
            let mut keys = Vec::new();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
            keys
        };
        for key in keys {
            let Some(worker) = key.strip_prefix(&prefix) else {
                continue;
            };
            let n: u64 = script
                .key(format!("{q}:workers"))
                .key(&key)
                .arg(worker)
                .invoke_async(&mut conn)
                .await?;
            removed += n;
        }
    }
    Ok(removed)
}

/// How often gone consumers' registrations are looked for: one per process start or
/// consumer restart accumulates, and finding them walks the keyspace.
const FORGET_WORKERS_EVERY: Duration = Duration::from_secs(600);

/// The scheduler leader's periodic sweep: done and dead deliveries each pass, gone
/// consumers' registrations every ten minutes once the done sets are drained (a keyspace
/// walk over a backlog of finished deliveries would be wasted).
#[derive(Debug, Default)]
pub struct Reclaimer {
    workers_forgotten_at: Option<Instant>,
}

impl Reclaimer {
    pub async fn pass(
        &mut self,
        conn: &ConnectionManager,
        lanes: &Lanes,
        max_dead: u64,
    ) -> redis::RedisResult<Swept> {
        let limits = Limits::default();
        let mut swept = sweep(conn, lanes, limits, max_dead).await?;
        let drained = swept.done < (limits.batch * limits.batches) as u64;
        let due = self
            .workers_forgotten_at
            .is_none_or(|at| at.elapsed() >= FORGET_WORKERS_EVERY);
        if drained && due {
            self.workers_forgotten_at = Some(Instant::now());
            swept.workers = forget_gone_workers(conn, lanes).await?;
        }
        metrics::counter!("stasis_queue_reclaimed_total", "kind" => "done").increment(swept.done);
        metrics::counter!("stasis_queue_reclaimed_total", "kind" => "dead").increment(swept.dead);
        metrics::counter!("stasis_queue_reclaimed_total", "kind" => "worker")
            .increment(swept.workers);
        Ok(swept)
    }
}
