//! Expiring leases in Redis: the per-repository sync lock and the scheduler's leadership.
//!
//! A lease is a key holding a random token with an expiry. Only the holder of the token
//! renews or releases it (compare-and-act in Lua). Each acquisition also yields a fencing
//! token, strictly increasing per key, that writers check in Postgres so a holder that
//! lost its lease (paused, cut off) cannot overwrite the new holder's results.
//!
//! A worker's lease names the worker (see [`crate::liveness`]): once that worker's
//! heartbeat window has passed, the lease is taken over without waiting for its TTL.
//! A lease that vanished (Redis restarted without its data) is taken back by its holder
//! on the next renewal, keeping the fence counter above the holder's fence.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        crate::liveness::HOLDER_OF,
        r#"
local held = redis.call('GET', KEYS[1])
if held and not dead(held) then
  return {0, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if fence <= floor then
  fence = floor + 1
  redis.call('SET', KEYS[2], fence)
end
if held then
  return {fence, 1}
end
return {fence, 0}
"#
    ))
});

/// 1: renewed; 2: the key had vanished and is held again; 0: someone else holds it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if held then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
if fence < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
return 2
"#,
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    pub token: String,
    /// Strictly increasing per key across acquisitions.
    pub fence: i64,
    /// Taken over from a holder whose heartbeat window had passed.
    pub taken_over: bool,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// The key was gone (Redis lost its data, or the lease lapsed with nobody taking
    /// it): held again under the same token and fence.
    Reclaimed,
    /// Someone else holds it now.
    Lost,
}

#[derive(Clone)]
pub struct Leases {
    conn: ConnectionManager,
    namespace: String,
    /// The liveness key of the worker taking leases through this, if any.
    holder: Option<String>,
}

impl Leases {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        Self {
            conn,
            namespace: namespace.to_owned(),
            holder: None,
        }
    }

    /// Leases held by the worker process `worker`, which others may take over once its
    /// liveness key has expired.
    pub fn for_worker(conn: ConnectionManager, namespace: &str, worker: &str) -> Self {
        Self {
            holder: Some(crate::liveness::key(namespace, worker)),
            ..Self::new(conn, namespace)
        }
    }

    pub fn repo_key(&self, repo_id: uuid::Uuid) -> String {
        format!("{}:lock:repo:{repo_id}", self.namespace)
    }

    pub fn leader_key(&self) -> String {
        format!("{}:scheduler:leader", self.namespace)
    }

    /// Takes the lease when free. `fence_floor` is the highest fence already recorded in
    /// Postgres: Redis may have lost its counter (restart without persistence), and the
    /// new fence must still exceed every fence handed out before.
    pub async fn try_acquire(
        &self,
        key: &str,
        ttl: Duration,
        fence_floor: i64,
    ) -> redis::RedisResult<Option<Lease>> {
        let token = crate::liveness::token(self.holder.as_deref());
        let (fence, taken_over): (i64, i64) = ACQUIRE
            .key(key)
            .key(format!("{key}:fence"))
            .arg(&token)
            .arg(ttl_ms(ttl))
            .arg(fence_floor)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((fence > 0).then(|| Lease {
            key: key.to_owned(),
            token,
            fence,
            taken_over: taken_over == 1,
        }))
    }

    /// Extends the lease, or takes it back if its key vanished.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> redis::RedisResult<Renewal> {
        let renewed: i64 = RENEW
            .key(&lease.key)
            .key(format!("{}:fence", lease.key))
            .arg(&lease.token)
            .arg(ttl_ms(ttl))
            .arg(lease.fence)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match renewed {
            1 => Renewal::Renewed,
            2 => Renewal::Reclaimed,
            _ => Renewal::Lost,
        })
    }

    /// Whether anyone holds the lease at `key` now.
    pub async fn is_held(&self, key: &str) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Runs `work` holding the repository's sync lease, as a worker does while it writes
    /// the mirror: what moves or removes a mirror must not run beside a sync. `None`,
    /// with `work` not run, while a sync holds it. Short work only: nothing renews it.
    pub async fn while_repo_held<T, E: From<redis::RedisError>>(
        &self,
        repo_id: uuid::Uuid,
        ttl: Duration,
        fence_floor: i64,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, E> {
        let key = self.repo_key(repo_id);
        let Some(lease) = self.try_acquire(&key, ttl, fence_floor).await? else {
            return Ok(None);
        };
        let result = work.await;
        // expires on its own within `ttl` if this fails
        let _ = self.release(&lease).await;
        result.map(Some)
    }

    pub async fn release(&self, lease: &Lease) -> redis::RedisResult<bool> {
        let released: i64 = RELEASE
            .key(&lease.key)
            .arg(&lease.token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(released == 1)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}
