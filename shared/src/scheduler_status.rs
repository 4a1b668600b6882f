//! What the leading scheduler last did, published in Redis for operators: who leads,
//! when it last looked for due mirrors and when it will look next. The key expires with
//! the leadership, so a missing key means no scheduler is leading.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchedulerStatus {
    pub leader: String,
    /// The leader's own `mirror.enabled`: whether scheduled syncs run at all.
    pub enabled: bool,
    pub last_tick_at: Option<DateTime<Utc>>,
    pub next_tick_at: Option<DateTime<Utc>>,
}

fn key(namespace: &str) -> String {
    format!("{namespace}:scheduler:status")
}

/// Written by the leader on every loop; lives as long as `ttl`.
pub async fn publish(
    conn: &ConnectionManager,
    namespace: &str,
    status: &SchedulerStatus,
    ttl: Duration,
) -> redis::RedisResult<()> {
    let stamp = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    redis::pipe()
        .atomic()
        .hset_multiple(
            key(namespace),
            &[
                ("leader", status.leader.clone()),
                ("enabled", status.enabled.to_string()),
                ("last_tick_at", stamp(status.last_tick_at)),
                ("next_tick_at", stamp(status.next_tick_at)),
            ],
        )
        .pexpire(key(namespace), ttl.as_millis().max(1) as i64)
        .query_async::<()>(&mut conn.clone())
        .await
}

/// A leader that steps down clears it, so operators do not see it as leading.
pub async fn clear(conn: &ConnectionManager, namespace: &str) -> redis::RedisResult<()> {
    redis::cmd("DEL")
        .arg(key(namespace))
        .query_async(&mut conn.clone())
        .await
}

pub async fn read(
    conn: &ConnectionManager,
    namespace: &str,
) -> redis::RedisResult<Option<SchedulerStatus>> {
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(key(namespace))
        .query_async(&mut conn.clone())
        .await?;
    let stamp = |name: &str| {
        fields
            .get(name)
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Ok(fields.get("leader").map(|leader| SchedulerStatus {
        leader: leader.clone(),
        // a leader from before this field publishes none: it ran scheduled syncs only
        // when enabled, and then it said when it would tick next
        enabled: fields.get("enabled").map_or(
            fields.get("next_tick_at").is_some_and(|t| !t.is_empty()),
            |v| v == "true",
        ),
        last_tick_at: stamp("last_tick_at"),
        next_tick_at: stamp("next_tick_at"),
    }))
}
