//! Per-key locks: one strata applies the changes to a mirrored key one at
//! a time, so Postgres and Redis see them in the same order, and a
//! read-through re-warm never puts back a value a concurrent write or
//! delete just replaced. Concurrent misses on one key queue here and the
//! first one's fetch serves them all (they find the key resident).
//!
//! A lock exists only while someone holds or waits for it: the map holds
//! as many entries as keys being worked on, never more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OwnedMutexGuard;

/// The locks, by key.
#[derive(Debug, Default)]
pub struct KeyLocks {
    map: Mutex<HashMap<Bytes, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a key's change runs; dropping it releases the key.
#[derive(Debug)]
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Bytes,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &Bytes) -> KeyGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    /// Locks several keys, in byte order (so two multi-key commands never
    /// wait for each other in a cycle); duplicates are locked once.
    pub async fn lock_all(&self, keys: &[Bytes]) -> Vec<KeyGuard<'_>> {
        let mut sorted: Vec<&Bytes> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut guards = Vec::with_capacity(sorted.len());
        for k in sorted {
            guards.push(self.lock(k).await);
        }
        guards
    }

    /// Keys with a lock held or awaited.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no key is locked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it now: nobody waits, so the entry goes.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_once_released() {
        let locks = KeyLocks::default();
        let a = Bytes::from_static(b"a");
        {
            let _g = locks
                .lock_all(&[a.clone(), a.clone(), Bytes::from_static(b"b")])
                .await;
            assert_eq!(locks.len(), 2);
        }
        assert!(locks.is_empty());
    }
}
