//! Registered users: lookups through L1 (in-process) → L2 (Redis) → the database, registration
//! and key rotation; and their signed prekeys through the same levels (`prekeys`; one-time
//! prekeys are claimed from the database only, never cached).
//!
//! Every method here blocks (database, Redis, bundle decoding) and is called from blocking tasks;
//! only [`Directory::cached`] is cheap enough for the I/O workers. A rotation invalidates L1 here,
//! deletes the L2 entry and publishes the name so every other relay drops its L1 copy.

pub(crate) mod l1_cache;
pub mod l2_cache;
mod prekeys;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nano_crypto::{CryptoMode, Fingerprint, MonotonicClock, PublicBundle};

use crate::directory::l1_cache::TtlCache;
use crate::directory::l2_cache::RedisCache;
use crate::error::RelayError;
use crate::storage::{Rotation, Storage, UserRecord};
use crate::telemetry::metrics::Metrics;

/// A user as the relay needs it: the row and the decoded bundle.
#[derive(Debug)]
pub struct UserEntry {
    /// The stored row.
    pub record: UserRecord,
    /// The decoded, proof-checked bundle.
    pub bundle: PublicBundle,
}

type L1 = Mutex<TtlCache<String, Arc<UserEntry>, MonotonicClock>>;
type PrekeyL1 = Mutex<TtlCache<(String, CryptoMode), Arc<[u8]>, MonotonicClock>>;

/// Users, through the cache levels.
pub struct Directory {
    storage: Arc<dyn Storage>,
    l1: Option<L1>,
    /// Signed-prekeys records by (name, mode), sized and aged like `l1`.
    prekeys_l1: Option<PrekeyL1>,
    l2: Option<Arc<RedisCache>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("backend", &self.storage.backend())
            .field("l1", &self.l1.is_some())
            .field("l2", &self.l2.is_some())
            .finish()
    }
}

/// L2 value: user id (8 bytes, big-endian) ‖ key version (8 bytes, big-endian) ‖ encoded
/// bundle.
fn encode_l2(r: &UserRecord) -> Vec<u8> {
    let mut v = r.id.to_be_bytes().to_vec();
    v.extend_from_slice(&r.key_version.to_be_bytes());
    v.extend_from_slice(&r.bundle);
    v
}

fn entry(record: UserRecord) -> Result<Arc<UserEntry>, RelayError> {
    let bundle = PublicBundle::from_bytes(&record.bundle).map_err(|e| {
        RelayError::Corrupt(format!(
            "the stored bundle of user id {} does not decode: {e}",
            record.id
        ))
    })?;
    Ok(Arc::new(UserEntry { record, bundle }))
}

fn decode_l2(name: &str, v: &[u8]) -> Option<Arc<UserEntry>> {
    let (id, rest) = v.split_first_chunk::<8>()?;
    let (version, bundle) = rest.split_first_chunk::<8>()?;
    let bundle_dec = PublicBundle::from_bytes(bundle).ok()?;
    Some(Arc::new(UserEntry {
        record: UserRecord {
            id: i64::from_be_bytes(*id),
            username: name.to_owned(),
            bundle: bundle.to_vec(),
            fingerprint: bundle_dec.fingerprint().0,
            min_mode: bundle_dec.min_mode(),
            key_version: u64::from_be_bytes(*version),
        },
        bundle: bundle_dec,
    }))
}

impl Directory {
    /// A directory over `storage`, with an L1 of `l1_size` entries for `l1_ttl` (none when
    /// `l1_size` is 0) and an optional L2.
    pub fn new(
        storage: Arc<dyn Storage>,
        l1: Option<(usize, Duration)>,
        l2: Option<Arc<RedisCache>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            storage,
            l1: l1.map(|(n, ttl)| Mutex::new(TtlCache::new(n, ttl, MonotonicClock::new()))),
            prekeys_l1: l1.map(|(n, ttl)| Mutex::new(TtlCache::new(n, ttl, MonotonicClock::new()))),
            l2,
            metrics,
        }
    }

    fn l1(
        &self,
    ) -> Option<std::sync::MutexGuard<'_, TtlCache<String, Arc<UserEntry>, MonotonicClock>>> {
        self.l1
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The L1 entry for `name`, without blocking.
    pub fn cached(&self, name: &str) -> Option<Arc<UserEntry>> {
        let hit = self.l1()?.get(&name.to_owned());
        if hit.is_some() {
            self.metrics.l1_hits.inc();
        }
        hit
    }

    /// Looks `name` up through every level (blocking).
    pub fn lookup(&self, name: &str) -> Result<Option<Arc<UserEntry>>, RelayError> {
        if let Some(e) = self.cached(name) {
            return Ok(Some(e));
        }
        if self.l1.is_some() {
            self.metrics.l1_misses.inc();
        }
        let ticket = self.l1().map(|c| c.begin_load());
        let found = self.lookup_lower(name)?;
        if let (Some(e), Some(t), Some(mut c)) = (&found, ticket, self.l1()) {
            c.insert_loaded(name.to_owned(), Arc::clone(e), t);
        }
        Ok(found)
    }

    fn lookup_lower(&self, name: &str) -> Result<Option<Arc<UserEntry>>, RelayError> {
        if let Some(l2) = &self.l2 {
            match l2.get(name) {
                Ok(Some(v)) => {
                    if let Some(e) = decode_l2(name, &v) {
                        self.metrics.l2_hits.inc();
                        return Ok(Some(e));
                    }
                    tracing::warn!("undecodable L2 entry; reading the database");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "L2 lookup failed; reading the database"),
            }
            self.metrics.l2_misses.inc();
        }
        let Some(record) = self.storage.user(name)? else {
            return Ok(None);
        };
        if let Some(l2) = &self.l2
            && let Err(e) = l2.put(name, &encode_l2(&record))
        {
            tracing::warn!(error = %e, "L2 fill failed");
        }
        entry(record).map(Some)
    }

    /// Registers `name` for a verified `bundle` (blocking).
    pub fn register(
        &self,
        name: &str,
        bundle: &PublicBundle,
        now_ms: i64,
    ) -> Result<UserRecord, RelayError> {
        self.storage.create_user(
            name,
            &bundle.to_bytes(),
            &bundle.fingerprint().0,
            bundle.min_mode(),
            now_ms,
        )
    }

    /// Replaces `name`'s bundle if it is still `current`, then invalidates every cache level.
    pub fn rotate(
        &self,
        name: &str,
        current: &Fingerprint,
        version: u64,
        new: &PublicBundle,
        now_ms: i64,
    ) -> Result<(), RelayError> {
        let min_mode: CryptoMode = new.min_mode();
        self.storage.replace_bundle(&Rotation {
            username: name,
            expected: &current.0,
            version,
            bundle: &new.to_bytes(),
            fingerprint: &new.fingerprint().0,
            min_mode,
            now_ms,
        })?;
        self.invalidate_everywhere(name);
        Ok(())
    }

    /// Empties this relay's L1 (after a gap in the notices from other relays).
    pub fn invalidate_all_local(&self) {
        if let Some(mut c) = self.l1() {
            c.clear();
        }
        if let Some(mut c) = self.prekeys_l1() {
            c.clear();
        }
    }

    /// Drops `name`'s bundle and signed prekeys from this relay's L1 (an invalidation notice
    /// from another relay).
    pub fn invalidate_local(&self, name: &str) {
        if let Some(mut c) = self.l1() {
            c.invalidate(&name.to_owned());
        }
        if let Some(mut c) = self.prekeys_l1() {
            for mode in CryptoMode::ALL {
                c.invalidate(&(name.to_owned(), mode));
            }
        }
    }

    /// Drops `name` from this relay's L1 and from L2, and tells every other relay (a rotation
    /// or a new signed-prekeys record).
    fn invalidate_everywhere(&self, name: &str) {
        self.invalidate_local(name);
        if let Some(l2) = &self.l2
            && let Err(e) = l2.invalidate(name)
        {
            // The L2 entry expires within l2_cache_ttl_seconds; other relays' L1 within
            // l1_cache_ttl_seconds.
            tracing::warn!(error = %e, "L2 invalidation failed");
        }
    }
}
