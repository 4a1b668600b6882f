//! The pool's bookkeeping: at most `max_hosts` keys, each dropped once idle longer than
//! the idle timeout, the least recently used one first when room is needed, and every
//! key of an origin retired as soon as a check sees that origin differently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::key::{Key, Origin, View};

pub(super) struct Cache<V> {
    entries: HashMap<Key, Entry<V>>,
}

struct Entry<V> {
    value: V,
    used: Instant,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V: Clone> Cache<V> {
    /// Drops every key of `origin` seen otherwise than `view` (other addresses, another
    /// policy): their values are never handed out again. Returns how many went.
    pub fn retire(&mut self, origin: &Origin, view: &View) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|key, _| key.origin != *origin || key.view == *view);
        before - self.entries.len()
    }

    /// The value of `key`, made by `make` if it has none (or had one idle too long);
    /// either way marked as used `now`.
    pub fn get_or_make<E>(
        &mut self,
        key: Key,
        now: Instant,
        idle: Duration,
        max: usize,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.used) < idle);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.used = now;
            return Ok(entry.value.clone());
        }
        let value = make()?;
        while self.entries.len() >= max.max(1) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(oldest) => self.entries.remove(&oldest),
                None => break,
            };
        }
        self.entries.insert(
            key,
            Entry {
                value: value.clone(),
                used: now,
            },
        );
        Ok(value)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use super::super::super::session::NetworkPolicy;
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn policy() -> NetworkPolicy {
        NetworkPolicy::from_config(&stasis_shared::Config::default())
    }

    fn key(host: &str, addr: &str) -> Key {
        let addr: SocketAddr = addr.parse().unwrap();
        Key {
            origin: Origin {
                https: true,
                host: host.into(),
                port: addr.port(),
            },
            view: View::new(vec![addr], &policy()),
            scope: None,
        }
    }

    /// The value for `key`, `fresh` when it has to be made.
    fn get(cache: &mut Cache<u32>, key: &Key, now: Instant, max: usize, fresh: u32) -> u32 {
        let made: Result<u32, Infallible> =
            cache.get_or_make(key.clone(), now, IDLE, max, || Ok(fresh));
        made.unwrap()
    }

    #[test]
    fn a_key_gets_its_value_back_until_it_idles_out() {
        let (mut cache, t0) = (Cache::default(), Instant::now());
        let a = key("a.example", "192.0.2.1:443");
        assert_eq!(get(&mut cache, &a, t0, 8, 1), 1);
        assert_eq!(get(&mut cache, &a, t0 + IDLE / 2, 8, 2), 1);
        // idle measured from the last use
        assert_eq!(get(&mut cache, &a, t0 + IDLE, 8, 3), 1);
        assert_eq!(get(&mut cache, &a, t0 + IDLE * 3, 8, 4), 4);
    }

    #[test]
    fn past_its_bound_the_least_recently_used_key_goes() {
        let (mut cache, t0) = (Cache::default(), Instant::now());
        let keys: Vec<Key> = (1..=3)
            .map(|i| key(&format!("h{i}.example"), &format!("192.0.2.{i}:443")))
            .collect();
        get(&mut cache, &keys[0], t0, 2, 10);
        get(&mut cache, &keys[1], t0 + Duration::from_secs(1), 2, 20);
        get(&mut cache, &keys[0], t0 + Duration::from_secs(2), 2, 11);
        get(&mut cache, &keys[2], t0 + Duration::from_secs(3), 2, 30);
        assert_eq!(cache.len(), 2);
        let later = t0 + Duration::from_secs(4);
        assert_eq!(
            get(&mut cache, &keys[0], later, 2, 12),
            10,
            "used last: kept"
        );
        assert_eq!(
            get(&mut cache, &keys[1], later, 2, 21),
            21,
            "least recent: made anew"
        );
    }

    #[test]
    fn another_view_of_an_origin_retires_all_of_its_keys() {
        let (mut cache, t0) = (Cache::default(), Instant::now());
        let old = key("forge.example", "192.0.2.1:443");
        let mut scoped = old.clone();
        scoped.scope = Some(super::super::key::Scope::of("alice", "pw"));
        let other = key("other.example", "192.0.2.1:443");
        for (i, k) in [&old, &scoped, &other].into_iter().enumerate() {
            get(&mut cache, k, t0, 8, i as u32);
        }
        assert_eq!(cache.retire(&old.origin, &old.view), 0, "the same view");
        let moved = key("forge.example", "192.0.2.9:443");
        assert_eq!(cache.retire(&moved.origin, &moved.view), 2);
        assert_eq!(get(&mut cache, &old, t0, 8, 7), 7, "never handed out again");
        assert_eq!(
            get(&mut cache, &other, t0, 8, 9),
            2,
            "another origin keeps its own"
        );
    }
}
