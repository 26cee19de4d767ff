//! A bounded LRU + TTL cache of ephemeral KEM key pairs (per mode) and derived symmetric keys.
//!
//! Why: generating an ML-KEM or X-Wing key pair costs tens of microseconds; a relay answering
//! `key_exchange` serves the same signed ephemeral key for `key_cache_ttl_seconds`. An expired
//! entry is never served; it is dropped when next looked up, when evicted for room, or by
//! [`KeyCache::purge_expired`] (which callers run on a timer), and every cached secret zeroizes
//! on drop. Derived keys are indexed by an HMAC of their inputs under a random per-cache key,
//! so the index reveals nothing about the inputs. Time comes from an
//! injected [`Clock`] so expiry is testable without sleeping.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use lru::LruCache;
use rand_core::CryptoRngCore;

use crate::error::{CryptoError, Result};
use crate::kdf::{self, KdfLabel};
use crate::kem::KemKeyPair;
use crate::mode::CryptoMode;
use crate::secret::SymmetricKey;

/// Monotonic time as a duration since an arbitrary origin.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let n = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Saturate rather than wrap: time never runs backwards.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(n))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Hit and miss counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyCacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that had to generate or derive.
    pub misses: u64,
    /// Entries dropped for age or room.
    pub evictions: u64,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    created: Duration,
}

/// The cache. Not internally synchronized: wrap it in a mutex to share it.
pub struct KeyCache<C: Clock = MonotonicClock> {
    keypairs: LruCache<CryptoMode, Entry<Arc<KemKeyPair>>>,
    symmetric: LruCache<[u8; 32], Entry<Arc<SymmetricKey>>>,
    index_key: hmac::Key,
    ttl: Duration,
    clock: C,
    stats: KeyCacheStats,
}

impl<C: Clock> core::fmt::Debug for KeyCache<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyCache")
            .field("keypairs", &self.keypairs.len())
            .field("symmetric", &self.symmetric.len())
            .field("ttl", &self.ttl)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl KeyCache<MonotonicClock> {
    /// A cache of at most `max_entries` derived keys (at least 1) whose entries live `ttl`.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self::with_clock(max_entries, ttl, MonotonicClock::new())
    }
}

impl<C: Clock> KeyCache<C> {
    /// As [`KeyCache::new`] with an explicit clock.
    pub fn with_clock(max_entries: usize, ttl: Duration, clock: C) -> Self {
        let cap = NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN);
        let modes = NonZeroUsize::new(CryptoMode::ALL.len()).unwrap_or(NonZeroUsize::MIN);
        // A random index key per cache: the OS RNG failing here is a broken host, not input.
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut *k);
        Self {
            keypairs: LruCache::new(modes),
            symmetric: LruCache::new(cap),
            index_key: hmac::Key::new(hmac::HMAC_SHA256, &*k),
            ttl,
            clock,
            stats: KeyCacheStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> KeyCacheStats {
        self.stats
    }

    /// Number of cached derived keys.
    pub fn symmetric_len(&self) -> usize {
        self.symmetric.len()
    }

    fn fresh(&self, created: Duration) -> bool {
        self.clock.now().saturating_sub(created) < self.ttl
    }

    /// The current ephemeral key pair for `mode`, generating a new one when absent or expired.
    /// Also returns how long it remains valid.
    pub fn get_or_generate_keypair(
        &mut self,
        mode: CryptoMode,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Arc<KemKeyPair>, Duration)> {
        self.get_or_insert_keypair(mode, |rng| KemKeyPair::generate(mode, rng), rng)
    }

    /// As [`KeyCache::get_or_generate_keypair`], taking a new key pair from `make` (a pool of
    /// pre-generated keys, say) when one is needed.
    pub fn get_or_insert_keypair<R: CryptoRngCore>(
        &mut self,
        mode: CryptoMode,
        make: impl FnOnce(&mut R) -> Result<KemKeyPair>,
        rng: &mut R,
    ) -> Result<(Arc<KemKeyPair>, Duration)> {
        if let Some(e) = self.keypairs.get(&mode) {
            let created = e.created;
            let value = Arc::clone(&e.value);
            if self.fresh(created) {
                self.stats.hits += 1;
                let left = self
                    .ttl
                    .saturating_sub(self.clock.now().saturating_sub(created));
                return Ok((value, left));
            }
            self.keypairs.pop(&mode);
            self.stats.evictions += 1;
        }
        self.stats.misses += 1;
        let kp = make(rng)?;
        if kp.mode() != mode {
            return Err(CryptoError::ModeMismatch {
                expected: mode,
                got: kp.mode(),
            });
        }
        let kp = Arc::new(kp);
        self.keypairs.put(
            mode,
            Entry {
                value: Arc::clone(&kp),
                created: self.clock.now(),
            },
        );
        Ok((kp, self.ttl))
    }

    /// HKDF-derives a 32-byte key for (`label`, `ikm`, `info`), shared with the cache (the key
    /// itself is never copied: `SecretBytes` has no `Clone`), served from the cache when the
    /// same inputs were derived within the TTL. The map key is an HMAC of the inputs under the
    /// cache's random key, so the cache never holds `ikm` nor a guessable digest of it.
    ///
    /// # Errors
    /// [`crate::CryptoError::Internal`] if HKDF fails ([`kdf::derive`]).
    pub fn symmetric_key(
        &mut self,
        label: KdfLabel,
        ikm: &[u8],
        info: &[u8],
    ) -> crate::Result<Arc<SymmetricKey>> {
        let mut h = hmac::Context::with_key(&self.index_key);
        h.update(label.as_bytes());
        h.update(&(ikm.len() as u64).to_be_bytes());
        h.update(ikm);
        h.update(info);
        let mut id = [0u8; 32];
        id.copy_from_slice(h.sign().as_ref());
        let now = self.clock.now();
        if let Some(e) = self.symmetric.get(&id) {
            if now.saturating_sub(e.created) < self.ttl {
                self.stats.hits += 1;
                return Ok(Arc::clone(&e.value));
            }
            self.symmetric.pop(&id);
            self.stats.evictions += 1;
        }
        self.stats.misses += 1;
        let key: Arc<SymmetricKey> = Arc::new(kdf::derive(label, b"", ikm, &[info])?);
        let created = self.clock.now();
        if let Some((_, _old)) = self.symmetric.push(
            id,
            Entry {
                value: Arc::clone(&key),
                created,
            },
        ) {
            self.stats.evictions += 1;
        }
        Ok(key)
    }

    /// Drops every expired entry (their secrets zeroize on drop).
    pub fn purge_expired(&mut self) {
        let now = self.clock.now();
        let ttl = self.ttl;
        let stale = |created: Duration| now.saturating_sub(created) >= ttl;
        let modes: Vec<_> = self
            .keypairs
            .iter()
            .filter(|(_, e)| stale(e.created))
            .map(|(m, _)| *m)
            .collect();
        for m in modes {
            self.keypairs.pop(&m);
            self.stats.evictions += 1;
        }
        let ids: Vec<_> = self
            .symmetric
            .iter()
            .filter(|(_, e)| stale(e.created))
            .map(|(k, _)| *k)
            .collect();
        for k in ids {
            self.symmetric.pop(&k);
            self.stats.evictions += 1;
        }
    }
}
