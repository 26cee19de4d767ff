//! The in-process (L1) cache of user bundles: bounded LRU with a TTL (`[caching]
//! l1_cache_size`, `l1_cache_ttl_seconds`).
//!
//! Lookups go L1 → L2 (Redis) → database; a key rotation removes the user from every level.
//! An expired entry is never returned; it is dropped when next looked up or evicted for room.
//!
//! A load races a rotation: the loader reads the old bundle, the rotation invalidates, then the
//! loader would cache the old bundle again. So a loader takes a [`LoadTicket`] *before* reading
//! the lower level, and [`TtlCache::insert_loaded`] discards the value if any invalidation
//! happened since.
//!
//! Why not `moka`: it has no clock a test can drive (the TTL tests would sleep), its admission
//! policy may refuse to cache a bundle at all, and the load ticket above would still be ours.
//! What is left here is an `lru::LruCache` (a well-kept crate) with a creation time per entry.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;
use nano_crypto::Clock;

/// Hit, miss and eviction counters (the directory counts hits and misses in the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that missed (absent or expired).
    pub misses: u64,
    /// Entries dropped for age or room, or invalidated.
    pub evictions: u64,
}

/// Taken before reading a lower cache level; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadTicket(u64);

/// A bounded LRU whose entries expire `ttl` after insertion.
pub(crate) struct TtlCache<K: Hash + Eq, V, C: Clock> {
    map: LruCache<K, (V, Duration)>,
    generation: u64,
    ttl: Duration,
    clock: C,
    stats: CacheStats,
}

impl<K: Hash + Eq, V, C: Clock> std::fmt::Debug for TtlCache<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("len", &self.map.len())
            .field("ttl", &self.ttl)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<K: Hash + Eq, V: Clone, C: Clock> TtlCache<K, V, C> {
    /// A cache of at most `capacity` entries (at least 1).
    pub(crate) fn new(capacity: usize, ttl: Duration, clock: C) -> Self {
        Self {
            map: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            generation: 0,
            ttl,
            clock,
            stats: CacheStats::default(),
        }
    }

    /// The value for `key` if present and fresh.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let now = self.clock.now();
        match self.map.get(key) {
            Some((v, at)) if now.saturating_sub(*at) < self.ttl => {
                self.stats.hits += 1;
                Some(v.clone())
            }
            Some(_) => {
                self.map.pop(key);
                self.stats.evictions += 1;
                self.stats.misses += 1;
                None
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// A ticket for a load about to read a lower level.
    pub(crate) fn begin_load(&self) -> LoadTicket {
        LoadTicket(self.generation)
    }

    /// Caches a loaded value unless an invalidation happened since `ticket` was taken. Returns
    /// whether it was cached.
    pub(crate) fn insert_loaded(&mut self, key: K, value: V, ticket: LoadTicket) -> bool {
        if ticket.0 != self.generation {
            return false;
        }
        self.insert(key, value);
        true
    }

    /// Stores `value` for `key` (a value the caller itself just wrote below, e.g. a new
    /// registration), evicting the least recently used entry when full.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let now = self.clock.now();
        let replaced_same_key = self.map.contains(&key);
        if self.map.push(key, (value, now)).is_some() && !replaced_same_key {
            self.stats.evictions += 1;
        }
    }

    /// Removes `key` (key rotation) and voids every load in flight.
    pub(crate) fn invalidate(&mut self, key: &K) {
        self.generation = self.generation.wrapping_add(1);
        if self.map.pop(key).is_some() {
            self.stats.evictions += 1;
        }
    }

    /// Removes everything (invalidation notices may have been missed) and voids every load in
    /// flight.
    pub(crate) fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.stats.evictions += self.map.len() as u64;
        self.map.clear();
    }

    /// Entries held (fresh or not yet noticed to be stale).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The counters.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nano_crypto::ManualClock;

    fn cache(cap: usize) -> (TtlCache<&'static str, u32, ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        (
            TtlCache::new(cap, Duration::from_secs(60), clock.clone()),
            clock,
        )
    }

    #[test]
    fn hit_miss_and_expiry() {
        let (mut c, clock) = cache(10);
        assert_eq!(c.get(&"alice"), None);
        c.insert("alice", 1);
        assert_eq!(c.get(&"alice"), Some(1));
        clock.advance(Duration::from_secs(59));
        assert_eq!(c.get(&"alice"), Some(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(c.get(&"alice"), None);
        assert!(c.is_empty());
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 2,
                evictions: 1
            }
        );
    }

    #[test]
    fn bounded_lru_and_invalidation() {
        let (mut c, _) = cache(2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get(&"a"), Some(1)); // a is now most recent
        c.insert("c", 3); // evicts b
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"b"), None);
        assert_eq!(c.get(&"a"), Some(1));
        c.insert("a", 10); // replacing is not an eviction
        assert_eq!(c.get(&"a"), Some(10));
        c.invalidate(&"a");
        c.invalidate(&"a");
        assert_eq!(c.get(&"a"), None);
        assert_eq!(c.stats().evictions, 2);
    }

    #[test]
    fn a_load_racing_an_invalidation_is_discarded() {
        let (mut c, _) = cache(4);
        c.insert("alice", 1);
        let ticket = c.begin_load();
        c.invalidate(&"alice"); // the rotation lands while the loader reads the database
        assert!(!c.insert_loaded("alice", 1, ticket));
        assert_eq!(c.get(&"alice"), None);
        let fresh = c.begin_load();
        assert!(c.insert_loaded("alice", 2, fresh));
        assert_eq!(c.get(&"alice"), Some(2));
    }

    #[test]
    fn reinsert_refreshes_the_ttl() {
        let (mut c, clock) = cache(4);
        c.insert("k", 1);
        clock.advance(Duration::from_secs(50));
        c.insert("k", 2);
        clock.advance(Duration::from_secs(50));
        assert_eq!(c.get(&"k"), Some(2));
    }
}
