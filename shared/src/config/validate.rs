//! What serde cannot check: ranges, and the settings that must agree with each other.

use std::time::Duration;

use super::{Config, ConfigError};

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, msg: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                msg: msg.into(),
            })
        }
        let ns = &self.queue.namespace;
        if ns.is_empty()
            || ns
                .chars()
                .any(|c| c.is_whitespace() || c == '{' || c == '}')
        {
            return invalid(
                "queue.namespace",
                "must be non-empty without spaces or braces",
            );
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.reuse_connections {
            if self.worker.idle_connection_timeout.is_zero() {
                return invalid(
                    "worker.idle_connection_timeout",
                    "must be more than zero (or set worker.reuse_connections to false)",
                );
            }
            if self.worker.max_pooled_hosts == 0 {
                return invalid(
                    "worker.max_pooled_hosts",
                    "must be at least 1 (or set worker.reuse_connections to false)",
                );
            }
        }
        if self.sync.max_attempts == 0 {
            return invalid("sync.max_attempts", "must be at least 1");
        }
        if self.sync.timeout.is_zero() {
            return invalid("sync.timeout", "must be more than zero");
        }
        if self.mirror.sync_interval < Duration::from_secs(1) {
            return invalid("mirror.sync_interval", "must be at least 1s");
        }
        if self.mirror.max_sync_interval < self.mirror.sync_interval {
            return invalid(
                "mirror.max_sync_interval",
                "must be at least mirror.sync_interval",
            );
        }
        if self.mirror.hard_fail_after == 0 {
            return invalid("mirror.hard_fail_after", "must be at least 1");
        }
        if self.mirror.min_sync_interval.is_zero() {
            return invalid("mirror.min_sync_interval", "must be more than zero");
        }
        if self.sync.lock_ttl < Duration::from_secs(1) {
            return invalid("sync.lock_ttl", "must be at least 1s");
        }
        if self.scheduler.batch_size == 0 {
            return invalid("scheduler.batch_size", "must be at least 1");
        }
        if self.notify.max_attempts == 0 {
            return invalid("notify.max_attempts", "must be at least 1");
        }
        for url in &self.notify.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid("notify.urls", "each must be an http(s) URL");
            }
        }
        if self.scheduler.stuck_after.is_zero() {
            return invalid("scheduler.stuck_after", "must be more than zero");
        }
        if self.scheduler.tick.is_zero() {
            return invalid("scheduler.tick", "must be more than zero");
        }
        if self.queue.heartbeat_interval.is_zero() || self.queue.missed_heartbeats == 0 {
            return invalid(
                "queue.heartbeat_interval",
                "heartbeat interval and missed_heartbeats must be more than zero",
            );
        }
        if self.queue.max_backlog == 0 || self.queue.max_backlog > 7000 {
            return invalid(
                "queue.max_backlog",
                "must be between 1 and 7000 (apalis-redis fails above ~8000 due jobs)",
            );
        }
        if self.queue.max_priority_backlog == 0 || self.queue.max_priority_backlog > 7000 {
            return invalid(
                "queue.max_priority_backlog",
                "must be between 1 and 7000 (apalis-redis fails above ~8000 due jobs)",
            );
        }
        if self.queue.dispatch_interval.is_zero() {
            return invalid("queue.dispatch_interval", "must be more than zero");
        }
        if self.queue.max_dead == 0 {
            return invalid(
                "queue.max_dead",
                "must be at least 1 (dead deliveries are what operators are alerted on)",
            );
        }
        let rl = &self.ratelimit;
        if [
            rl.read_per_second,
            rl.read_burst,
            rl.write_per_second,
            rl.write_burst,
        ]
        .into_iter()
        .chain([rl.import_per_second, rl.import_burst])
        .any(|n| n == 0)
        {
            return invalid("ratelimit", "rates and bursts must be at least 1");
        }
        if self.api.max_concurrent_requests == 0
            || self.api.request_timeout.is_zero()
            || self.api.header_read_timeout.is_zero()
        {
            return invalid(
                "api.max_concurrent_requests",
                "concurrency, request_timeout and header_read_timeout must be more than zero",
            );
        }
        if self.api.unavailable_after.is_zero() {
            return invalid("api.unavailable_after", "must be more than zero");
        }
        for (key, timeout) in [
            ("database.acquire_timeout", self.database.acquire_timeout),
            (
                "database.statement_timeout",
                self.database.statement_timeout,
            ),
            ("redis.response_timeout", self.redis.response_timeout),
            ("redis.connection_timeout", self.redis.connection_timeout),
        ] {
            if timeout.is_zero() {
                return invalid(key, "must be more than zero");
            }
        }
        self.storage.validate(&self.worker.storages)?;
        super::life::validate(&self.housekeeping, &self.history)?;
        self.lfs.validate()?;
        for (host, url) in &self.mirror.manifests {
            let parsed = url::Url::parse(url).ok();
            let web = parsed.filter(|u| matches!(u.scheme(), "http" | "https"));
            if host.is_empty() || web.is_none_or(|u| !u.username().is_empty()) {
                return invalid(
                    "mirror.manifests",
                    "each upstream host must map to an http(s) URL without credentials",
                );
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be `text` or `json`");
        }
        Ok(())
    }
}
