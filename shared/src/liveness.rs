//! Which worker processes are alive, as Redis sees it: each keeps a key that expires one
//! heartbeat window (`queue.heartbeat_interval × queue.missed_heartbeats`) after its last
//! beat. Repository locks and sync slots carry the key of the worker holding them, so a
//! dead worker's locks and slots are taken over once its window passes instead of when
//! their own TTL runs out; a worker that was only paused is stopped by the fence.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// The liveness key of the worker process `name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}:alive:{name}")
}

/// A lease or slot token naming its holder: `<random>@<liveness key>`. The Lua scripts
/// that take over from dead holders read the key back after the last `@`.
pub fn token(holder: Option<&str>) -> String {
    let random = uuid::Uuid::new_v4();
    match holder {
        Some(key) => format!("{random}@{key}"),
        None => random.to_string(),
    }
}

/// Lua: the liveness key named by token `t`, or nil for a token with no holder.
pub const HOLDER_OF: &str = "local function holder_of(t) return string.match(t, '^[^@]*@(.+)$') end\n\
local function dead(t) local h = holder_of(t) return h ~= nil and redis.call('EXISTS', h) == 0 end\n";

/// Marks the worker alive for `window`.
pub async fn beat(conn: &ConnectionManager, key: &str, window: Duration) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("PX")
        .arg(window.as_millis().max(1) as u64)
        .query_async(&mut conn.clone())
        .await
}

/// A worker that stops cleanly is dead at once.
pub async fn leave(conn: &ConnectionManager, key: &str) -> redis::RedisResult<()> {
    redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
}
