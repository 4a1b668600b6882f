//! Which tokens and webhook targets proved genuine lately (a token the database knew,
//! a delivery whose signature verified), by SHA-256 only. The rate limiter uses it to
//! choose, before any database lookup, whose budget a request spends: a proven one its
//! own, any other its address's. It decides nothing about authentication, which always
//! asks the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Forgotten after this long unused; the next request spends its address's budget once.
const KEEP_FOR: Duration = Duration::from_secs(3600);
/// At most this many entries (about 64 bytes each); past it, a new one is not kept
/// until old ones expire, so a flood of genuine identities cannot grow it without end.
const MAX_ENTRIES: usize = 100_000;

pub struct Recent<V> {
    entries: Mutex<HashMap<[u8; 32], (V, Instant)>>,
}

impl<V: Copy> Recent<V> {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (V, Instant)>> {
        // the map holds no invariant a panic elsewhere could break
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        let entries = self.lock();
        let (value, at) = entries.get(key)?;
        (at.elapsed() < KEEP_FOR).then_some(*value)
    }

    pub fn prove(&self, key: [u8; 32], value: V) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, (_, at)| at.elapsed() < KEEP_FOR);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn forget(&self, key: &[u8; 32]) {
        self.lock().remove(key);
    }

    pub fn sweep(&self) {
        let mut entries = self.lock();
        entries.retain(|_, (_, at)| at.elapsed() < KEEP_FOR);
        entries.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proven_keys_are_found_until_forgotten() {
        let recent = Recent::new();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(recent.get(&a), None);
        recent.prove(a, 7u32);
        assert_eq!((recent.get(&a), recent.get(&b)), (Some(7), None));
        recent.prove(a, 8);
        assert_eq!(recent.get(&a), Some(8));
        recent.forget(&a);
        assert_eq!(recent.get(&a), None);
    }

    #[test]
    fn it_stops_growing_at_its_bound() {
        let recent = Recent::new();
        for i in 0..MAX_ENTRIES as u32 + 10 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            recent.prove(key, ());
        }
        assert_eq!(recent.lock().len(), MAX_ENTRIES);
    }
}
