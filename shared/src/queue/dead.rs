//! An operator's purge of the dead sets: deliveries apalis-redis gave up on stay there
//! for good otherwise, and so does the alert counting them. Their jobs' record is in
//! Postgres (a `failed` or `dead` job is retried from there, which pushes a new
//! delivery), so a dead delivery carries nothing worth keeping.

use redis::aio::ConnectionManager;

use super::{storage, Lanes};
use crate::config::QueueConfig;

/// Ids one script call removes: each call stays short however large a dead set grew.
const AT_ONCE: usize = 500;

/// Pops up to ARGV[1] ids off the dead set and forgets their payload and metadata,
/// unless the id waits again in the scheduled set (then its data is still needed).
const PURGE: &str = r#"
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  if not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HDEL', KEYS[3], id)
    redis.call('DEL', KEYS[4] .. ':' .. id)
  end
end
return #ids
"#;

/// Empties every lane's dead set; the number of deliveries removed.
pub async fn purge_dead(
    conn: &ConnectionManager,
    cfg: &QueueConfig,
    lanes: &Lanes,
) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let script = redis::Script::new(PURGE);
    let mut removed = 0u64;
    for of in lanes.all() {
        let config = storage::<()>(conn.clone(), cfg, &of.storage, of.lane, 1)
            .get_config()
            .clone();
        loop {
            let n: u64 = script
                .key(config.dead_jobs_set())
                .key(config.scheduled_jobs_set())
                .key(config.job_data_hash())
                .key(config.job_meta_hash())
                .arg(AT_ONCE)
                .invoke_async(&mut conn)
                .await?;
            removed += n;
            if n < AT_ONCE as u64 {
                break;
            }
        }
    }
    Ok(removed)
}
