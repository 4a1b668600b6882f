//! Fleet-wide caps on concurrent syncs: in all, and per upstream host (hosts rate-limit
//! mirrors that burst). A cap is a sorted set in Redis of slot tokens scored by their
//! expiry, so a worker that dies frees its slots within the lock TTL without anyone
//! cleaning up after it. Slots are renewed with the repository lock. A slot names its
//! worker's liveness key, and a full cap first drops the slots of workers whose
//! heartbeat window has passed: a killed worker's slots come free within that window.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

/// KEYS: the caps' sets; ARGV: token, ttl ms, then one cap per key. Takes a slot in
/// every set or in none.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        stasis_shared::liveness::HOLDER_OF,
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if dead(member) then
        redis.call('ZREM', key, member)
      end
    end
    if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
      return 0
    end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[2]))
end
return 1
"#
    ))
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[2]))
end
return 1
"#,
    )
});

#[derive(Clone)]
pub struct Slots {
    conn: ConnectionManager,
    namespace: String,
    max_total: u32,
    max_per_host: u32,
    /// The liveness key of the worker taking slots through this.
    holder: Option<String>,
}

/// Slots held by one sync; empty when no cap is configured.
#[derive(Debug, Clone, Default)]
pub struct SlotGuard {
    keys: Vec<String>,
    token: String,
}

impl SlotGuard {
    /// Whether any cap is configured, so there is something to renew and release.
    pub fn holds_any(&self) -> bool {
        !self.keys.is_empty()
    }
}

impl Slots {
    /// A cap of 0 is no cap.
    pub fn new(
        conn: ConnectionManager,
        namespace: &str,
        max_total: u32,
        max_per_host: u32,
    ) -> Self {
        Self {
            conn,
            namespace: namespace.to_owned(),
            max_total,
            max_per_host,
            holder: None,
        }
    }

    /// Slots taken by the worker process `worker`, freed for others once its liveness
    /// key has expired.
    pub fn for_worker(mut self, worker: &str) -> Self {
        self.holder = Some(stasis_shared::liveness::key(&self.namespace, worker));
        self
    }

    /// A slot under every configured cap for a sync from `host`, or `None` while one of
    /// them is full.
    pub async fn try_acquire(
        &self,
        host: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Option<SlotGuard>> {
        let mut caps = Vec::new();
        if self.max_total > 0 {
            caps.push((format!("{}:slots:all", self.namespace), self.max_total));
        }
        if self.max_per_host > 0 {
            let key = format!(
                "{}:slots:host:{}",
                self.namespace,
                host.to_ascii_lowercase()
            );
            caps.push((key, self.max_per_host));
        }
        let token = stasis_shared::liveness::token(self.holder.as_deref());
        if caps.is_empty() {
            return Ok(Some(SlotGuard {
                keys: Vec::new(),
                token,
            }));
        }
        let mut script = ACQUIRE.prepare_invoke();
        for (key, _) in &caps {
            script.key(key);
        }
        script.arg(&token).arg(ttl_ms(ttl));
        for (_, cap) in &caps {
            script.arg(*cap);
        }
        let taken: i64 = script.invoke_async(&mut self.conn.clone()).await?;
        Ok((taken == 1).then(|| SlotGuard {
            keys: caps.into_iter().map(|(key, _)| key).collect(),
            token,
        }))
    }

    pub async fn renew(&self, guard: &SlotGuard, ttl: Duration) -> redis::RedisResult<()> {
        if guard.keys.is_empty() {
            return Ok(());
        }
        let mut script = RENEW.prepare_invoke();
        for key in &guard.keys {
            script.key(key);
        }
        script.arg(&guard.token).arg(ttl_ms(ttl));
        let _: i64 = script.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub async fn release(&self, guard: &SlotGuard) -> redis::RedisResult<()> {
        if guard.keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in &guard.keys {
            pipe.zrem(key, &guard.token).ignore();
        }
        pipe.query_async(&mut self.conn.clone()).await
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}
