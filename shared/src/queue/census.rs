//! What Redis holds right now, read from apalis-redis's keys directly: its own listing
//! and metrics calls are broken in 1.0.

use std::collections::HashSet;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use uuid::Uuid;

use super::queue_name;
use crate::domain::Lane;

/// Scheduled-lane jobs sitting in Redis, due or delayed (`scheduled`) plus ready
/// (`active`): what the scheduler fills in waves.
pub async fn backlog(conn: &ConnectionManager, namespace: &str) -> redis::RedisResult<u64> {
    let q = queue_name(namespace, Lane::Scheduled);
    let (scheduled, active): (u64, u64) = redis::pipe()
        .zcard(format!("{q}:scheduled"))
        .llen(format!("{q}:active"))
        .query_async(&mut conn.clone())
        .await?;
    Ok(scheduled + active)
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
    /// Given up by apalis itself (our handler never asks for that).
    pub dead: u64,
}

pub async fn redis_depth(
    conn: &ConnectionManager,
    namespace: &str,
) -> redis::RedisResult<RedisDepth> {
    let mut depth = RedisDepth::default();
    for lane in Lane::ALL {
        let d = lane_depth(conn, &queue_name(namespace, lane)).await?;
        depth.scheduled += d.scheduled;
        depth.active += d.active;
        depth.inflight += d.inflight;
        depth.dead += d.dead;
    }
    Ok(depth)
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
    namespace: &str,
) -> redis::RedisResult<HashSet<Uuid>> {
    let mut conn = conn.clone();
    let mut jobs = HashSet::new();
    for lane in Lane::ALL {
        let q = queue_name(namespace, lane);
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
