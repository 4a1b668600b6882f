//! A running sync's transfer progress, as its worker publishes it and the API and
//! `stasisctl` read it: one Redis key per repository with a short expiry.
//!
//! Redis rather than Postgres: the value changes every second of a long fetch, nobody
//! needs it once the sync has ended, and a key that expires by itself cannot outlive a
//! worker killed mid-fetch by more than its TTL. The value names its job, so a reader
//! shows it only beside that job while it runs.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a published value lives unless published again. The publisher rewrites an
/// unchanged value well within it, so a stalled download keeps showing where it stands.
pub const TTL: Duration = Duration::from_secs(15);

/// Where a fetch's download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The pack arrives: `received_objects` of `total_objects`.
    ReceivingObjects,
    /// Every object is in; deltas are resolved: `indexed_deltas` of `total_deltas`.
    ResolvingDeltas,
    /// The pack is complete; the sync writes the refs and finishes.
    Done,
}

/// Counts as libgit2 reports them during the download, and when they last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncProgress {
    pub phase: Phase,
    pub received_objects: u64,
    /// Objects in the pack upstream sends (0 until its header has arrived).
    pub total_objects: u64,
    pub indexed_deltas: u64,
    /// Known once every object has arrived.
    pub total_deltas: u64,
    pub received_bytes: u64,
    /// When these counts last changed.
    pub updated_at: DateTime<Utc>,
}

/// The stored value: the progress and the job it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    job_id: Uuid,
    #[serde(flatten)]
    progress: SyncProgress,
}

/// Compare and delete in one step: the value's job is inside its JSON.
static CLEAR: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

pub fn key(namespace: &str, repo_id: Uuid) -> String {
    format!("{namespace}:progress:{repo_id}")
}

/// Publishes `progress` of `job_id` for `TTL`.
pub async fn publish(
    conn: &ConnectionManager,
    namespace: &str,
    repo_id: Uuid,
    job_id: Uuid,
    progress: &SyncProgress,
) -> redis::RedisResult<()> {
    // cannot fail (no map keys, no custom serializers); an empty value reads as none
    let value = serde_json::to_string(&Stored {
        job_id,
        progress: progress.clone(),
    })
    .unwrap_or_default();
    redis::cmd("SET")
        .arg(key(namespace, repo_id))
        .arg(value)
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(&mut conn.clone())
        .await
}

/// The progress of `job_id` on `repo_id`, if its worker published one that has not
/// expired. A value of another job (an earlier one's, before it expired) is none.
pub async fn read(
    conn: &ConnectionManager,
    namespace: &str,
    repo_id: Uuid,
    job_id: Uuid,
) -> redis::RedisResult<Option<SyncProgress>> {
    let value: Option<String> = redis::cmd("GET")
        .arg(key(namespace, repo_id))
        .query_async(&mut conn.clone())
        .await?;
    Ok(value
        .and_then(|v| serde_json::from_str::<Stored>(&v).ok())
        .filter(|s| s.job_id == job_id)
        .map(|s| s.progress))
}

/// Removes the progress once the download has ended; only `job_id`'s, so a late
/// removal cannot take a newer sync's value away.
pub async fn clear(
    conn: &ConnectionManager,
    namespace: &str,
    repo_id: Uuid,
    job_id: Uuid,
) -> redis::RedisResult<()> {
    let _: i64 = CLEAR
        .key(key(namespace, repo_id))
        .arg(format!("\"job_id\":\"{job_id}\""))
        .invoke_async(&mut conn.clone())
        .await?;
    Ok(())
}
