//! Expiring leases in Redis: the per-repository sync lock and the scheduler's leadership.
//!
//! A lease is a key holding a random token with an expiry. Only the holder of the token
//! renews or releases it (compare-and-act in Lua). Each acquisition also yields a fencing
//! token, strictly increasing per key, that writers check in Postgres so a holder that
//! lost its lease (paused, cut off) cannot overwrite the new holder's results.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if fence <= floor then
    fence = floor + 1
    redis.call('SET', KEYS[2], fence)
  end
  return fence
end
return 0
"#,
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
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
}

#[derive(Clone)]
pub struct Leases {
    conn: ConnectionManager,
    namespace: String,
}

impl Leases {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        Self {
            conn,
            namespace: namespace.to_owned(),
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
        let token = uuid::Uuid::new_v4().to_string();
        let fence: i64 = ACQUIRE
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
        }))
    }

    /// Extends the lease; `false` means it expired and may belong to someone else.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> redis::RedisResult<bool> {
        let renewed: i64 = RENEW
            .key(&lease.key)
            .arg(&lease.token)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(renewed == 1)
    }

    /// Whether anyone holds the lease at `key` now.
    pub async fn is_held(&self, key: &str) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
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
