//! What Redis holds right now, read from apalis-redis's keys directly: its own listing
//! and metrics calls are broken in 1.0.

use std::collections::HashSet;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use uuid::Uuid;

use super::Lanes;
use crate::domain::Lane;

/// Scheduled-lane jobs sitting in Redis, due or delayed (`scheduled`) plus ready
/// (`active`), every storage's together: what the scheduler fills in waves.
pub async fn backlog(conn: &ConnectionManager, lanes: &Lanes) -> redis::RedisResult<u64> {
    let mut pipe = redis::pipe();
    for of in lanes
        .all()
        .into_iter()
        .filter(|of| of.lane == Lane::Scheduled)
    {
        pipe.zcard(format!("{}:scheduled", of.queue))
            .llen(format!("{}:active", of.queue));
    }
    let counts: Vec<u64> = pipe.query_async(&mut conn.clone()).await?;
    Ok(counts.iter().sum())
}

/// Jobs in Redis by where they sit: apalis-redis 1.0's own listing and metrics calls
/// are broken, so the keys are read directly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RedisDepth {
    /// Waiting for their time (retry backoff, postponed) or not yet promoted.
    pub scheduled: u64,
    /// Ready for the next worker fetch.
    pub active: u64,
    /// Taken by a worker and not yet acknowledged.
    pub inflight: u64,
    /// Given up by the queue itself (the sync handler never asks for that).
    pub dead: u64,
}

pub async fn redis_depth(
    conn: &ConnectionManager,
    lanes: &Lanes,
) -> redis::RedisResult<RedisDepth> {
    Ok(RedisDepth::total(&lane_depths(conn, lanes).await?))
}

impl RedisDepth {
    /// Every lane's deliveries together.
    pub fn total(lanes: &[(Lane, RedisDepth)]) -> Self {
        lanes.iter().fold(Self::default(), |sum, (_, d)| Self {
            scheduled: sum.scheduled + d.scheduled,
            active: sum.active + d.active,
            inflight: sum.inflight + d.inflight,
            dead: sum.dead + d.dead,
        })
    }
}

/// Each lane's depth apart (every storage's lane of that kind together): a priority
/// lane that grows while the scheduled one drains is a different problem from the
/// reverse.
pub async fn lane_depths(
    conn: &ConnectionManager,
    lanes: &Lanes,
) -> redis::RedisResult<Vec<(Lane, RedisDepth)>> {
    let mut depths: Vec<(Lane, RedisDepth)> = Lane::ALL
        .into_iter()
        .map(|lane| (lane, RedisDepth::default()))
        .collect();
    for of in lanes.all() {
        let depth = lane_depth(conn, &of.queue).await?;
        if let Some((_, sum)) = depths.iter_mut().find(|(lane, _)| *lane == of.lane) {
            *sum = RedisDepth::total(&[(of.lane, *sum), (of.lane, depth)]);
        }
    }
    Ok(depths)
}

/// A delivery the queue gave up on, in a lane's dead set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DeadDelivery {
    /// `priority` or `scheduled`.
    pub lane: &'static str,
    /// The storage whose lane it was in.
    pub storage: String,
    /// The queue's id for the delivery.
    pub delivery_id: String,
    /// The job it carried, when its payload is still stored and names one.
    pub job_id: Option<Uuid>,
}

/// Up to `limit` dead deliveries per lane (a dead set is unbounded: SSCAN reads a
/// bounded part of it, not all of it).
pub async fn dead_deliveries(
    conn: &ConnectionManager,
    lanes: &Lanes,
    limit: usize,
) -> redis::RedisResult<Vec<DeadDelivery>> {
    let mut conn = conn.clone();
    let mut found = Vec::new();
    for of in lanes.all() {
        let (q, lane) = (of.queue, of.lane);
        let mut ids: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
                .arg(format!("{q}:dead"))
                .arg(cursor)
                .arg("COUNT")
                .arg(limit.max(10))
                .query_async(&mut conn)
                .await?;
            ids.extend(batch);
            cursor = next;
            if cursor == 0 || ids.len() >= limit {
                break;
            }
        }
        ids.truncate(limit);
        if ids.is_empty() {
            continue;
        }
        ids.sort();
        let data: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(format!("{q}:data"))
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        for (id, data) in ids.into_iter().zip(data) {
            found.push(DeadDelivery {
                lane: lane.name(),
                storage: of.storage.clone(),
                delivery_id: id,
                job_id: data.as_deref().and_then(job_of),
            });
        }
    }
    Ok(found)
}

async fn lane_depth(conn: &ConnectionManager, q: &str) -> redis::RedisResult<RedisDepth> {
    let mut conn = conn.clone();
    let (scheduled, active, dead): (u64, u64, u64) = redis::pipe()
        .zcard(format!("{q}:scheduled"))
        .llen(format!("{q}:active"))
        .scard(format!("{q}:dead"))
        .query_async(&mut conn)
        .await?;
    let sets = inflight_sets(&mut conn, q).await?;
    let mut inflight = 0;
    if !sets.is_empty() {
        let mut pipe = redis::pipe();
        for set in &sets {
            pipe.scard(set);
        }
        let sizes: Vec<u64> = pipe.query_async(&mut conn).await?;
        inflight = sizes.iter().sum();
    }
    Ok(RedisDepth {
        scheduled,
        active,
        inflight,
        dead,
    })
}

/// Every inflight set of a lane's consumers. SCAN walks the whole keyspace, whatever the
/// pattern: at its default of 10 keys a call, a Redis holding 30,000 keys took 3,000
/// round trips.
async fn inflight_sets(conn: &mut ConnectionManager, q: &str) -> redis::RedisResult<Vec<String>> {
    let mut iter = conn
        .scan_options::<String>(
            redis::ScanOptions::default()
                .with_pattern(format!("{q}:inflight:*"))
                .with_count(1000),
        )
        .await?;
    let mut sets = Vec::new();
    while let Some(key) = futures::StreamExt::next(&mut iter).await {
        sets.push(key?);
    }
    Ok(sets)
}

/// The jobs that have a live delivery in Redis: waiting (scheduled or ready) or taken by
/// a consumer and not yet acknowledged. O(backlog), which `queue.max_backlog` bounds;
/// run once per loss of Redis data, never per request.
pub async fn delivered_jobs(
    conn: &ConnectionManager,
    lanes: &Lanes,
) -> redis::RedisResult<HashSet<Uuid>> {
    let mut conn = conn.clone();
    let mut jobs = HashSet::new();
    for of in lanes.all() {
        let q = of.queue;
        let mut ids: Vec<String> = conn.zrange(format!("{q}:scheduled"), 0, -1).await?;
        ids.extend(
            conn.lrange::<_, Vec<String>>(format!("{q}:active"), 0, -1)
                .await?,
        );
        for set in inflight_sets(&mut conn, &q).await? {
            ids.extend(conn.smembers::<_, Vec<String>>(set).await?);
        }
        for chunk in ids.chunks(1000) {
            let data: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(format!("{q}:data"))
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
            jobs.extend(data.iter().flatten().filter_map(|d| job_of(d)));
        }
    }
    Ok(jobs)
}

/// The job id a delivery's stored payload names, wherever apalis nests it.
fn job_of(data: &str) -> Option<Uuid> {
    fn find(v: &serde_json::Value) -> Option<Uuid> {
        match v {
            serde_json::Value::Object(map) => map
                .get("job_id")
                .and_then(|id| id.as_str()?.parse().ok())
                .or_else(|| map.values().find_map(find)),
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    find(&serde_json::from_str(data).ok()?)
}
