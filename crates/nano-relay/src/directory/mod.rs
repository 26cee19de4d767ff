//! Registered users: lookups through L1 (in-process) → L2 (Redis) → the database, registration
//! and key rotation; and their signed prekeys through the same levels (`prekeys`; one-time
//! prekeys are claimed from the database only, never cached).
//!
//! Every method here blocks (database, Redis) and is called from blocking tasks; only
//! [`Directory::cached`] is cheap enough for the I/O workers. An entry decodes its bundle (and
//! verifies the proofs of possession) when first asked, [`UserEntry::bundle`], also off the I/O
//! workers. A rotation invalidates L1 here, deletes the L2 entry and publishes the name so every
//! other relay drops its L1 copy.

pub(crate) mod l1_cache;
pub mod l2_cache;
mod prekeys;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nano_crypto::{CryptoMode, Fingerprint, MonotonicClock, PublicBundle};

use crate::directory::l1_cache::TtlCache;
use crate::directory::l2_cache::RedisCache;
use crate::error::RelayError;
use crate::storage::{Rotation, Storage, UserRecord};
use crate::telemetry::metrics::Metrics;

/// A user as the relay needs it: the row, and its bundle decoded on first use.
///
/// Most lookups (serving the identity bundle, a message's mode floor, a prekey claim) need only
/// the row, so an entry read from the database or L2 decodes nothing until a login, a prekey
/// upload or a key rotation needs the keys; the proofs of possession of every mode are checked
/// then, once per entry.
#[derive(Debug)]
pub struct UserEntry {
    /// The stored row.
    pub record: UserRecord,
    bundle: OnceLock<PublicBundle>,
}

impl UserEntry {
    /// An entry of `record`, not decoded yet.
    pub fn new(record: UserRecord) -> Self {
        Self {
            record,
            bundle: OnceLock::new(),
        }
    }

    /// The decoded bundle, every proof of possession checked (about 0.1 ms for a hybrid user
    /// on the first call, nothing after); call it from a blocking or crypto task.
    ///
    /// # Errors
    /// [`RelayError::Corrupt`] if the stored bundle does not decode or verify, or if its
    /// fingerprint or minimum mode differs from the row's.
    pub fn bundle(&self) -> Result<&PublicBundle, RelayError> {
        if let Some(b) = self.bundle.get() {
            return Ok(b);
        }
        let r = &self.record;
        let b = PublicBundle::from_bytes(&r.bundle).map_err(|e| {
            RelayError::Corrupt(format!(
                "the stored bundle of user id {} does not decode: {e}",
                r.id
            ))
        })?;
        if b.fingerprint().0 != r.fingerprint || b.min_mode() != r.min_mode {
            return Err(RelayError::Corrupt(format!(
                "the stored bundle of user id {} does not match its row",
                r.id
            )));
        }
        // A concurrent first call may have won; both decoded the same bytes.
        Ok(self.bundle.get_or_init(|| b))
    }

    /// Whether [`UserEntry::bundle`] has decoded the bundle already.
    pub fn is_decoded(&self) -> bool {
        self.bundle.get().is_some()
    }

    /// The row's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.record.fingerprint)
    }
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

/// The first byte of an L2 value of this layout. The older layout began with the user id's high
/// byte (0 for every id below 2^56), so a relay never mistakes one for the other; relays of
/// either version read the other's values as a miss and go to the database.
const L2_LAYOUT: u8 = 0x02;

/// Bytes before the bundle in an L2 value.
const L2_HEADER: usize = 1 + 8 + 8 + 32 + 1;

/// L2 value: layout (1, [`L2_LAYOUT`]) ‖ user id (8 bytes, big-endian) ‖ key version (8 bytes,
/// big-endian) ‖ fingerprint (32) ‖ minimum mode (1) ‖ encoded bundle.
fn encode_l2(r: &UserRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(L2_HEADER + r.bundle.len());
    v.push(L2_LAYOUT);
    v.extend_from_slice(&r.id.to_be_bytes());
    v.extend_from_slice(&r.key_version.to_be_bytes());
    v.extend_from_slice(&r.fingerprint);
    v.push(r.min_mode.to_byte());
    v.extend_from_slice(&r.bundle);
    v
}

/// An L2 value back as a row (the bundle is decoded when first needed, [`UserEntry::bundle`]);
/// `None` if it is of another layout, too short, names no mode or holds no bundle.
fn decode_l2(name: &str, v: &[u8]) -> Option<UserRecord> {
    let (&L2_LAYOUT, rest) = v.split_first()? else {
        return None;
    };
    let (id, rest) = rest.split_first_chunk::<8>()?;
    let (version, rest) = rest.split_first_chunk::<8>()?;
    let (fingerprint, rest) = rest.split_first_chunk::<32>()?;
    let (mode, bundle) = rest.split_first()?;
    if bundle.is_empty() {
        return None;
    }
    Some(UserRecord {
        id: i64::from_be_bytes(*id),
        username: name.to_owned(),
        bundle: bundle.to_vec(),
        fingerprint: *fingerprint,
        min_mode: CryptoMode::from_byte(*mode).ok()?,
        key_version: u64::from_be_bytes(*version),
    })
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
                    if let Some(r) = decode_l2(name, &v) {
                        self.metrics.l2_hits.inc();
                        return Ok(Some(Arc::new(UserEntry::new(r))));
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
        Ok(Some(Arc::new(UserEntry::new(record))))
    }

    /// Looks `name` up in the database again, past L1 and L2, and caches what it finds: after a
    /// cached copy turned out damaged ([`UserEntry::bundle`] failed), so one bad cache value
    /// costs one more read, not every login until it expires.
    pub fn reload(&self, name: &str) -> Result<Option<Arc<UserEntry>>, RelayError> {
        if let Some(mut c) = self.l1() {
            c.invalidate(&name.to_owned());
        }
        if let Some(l2) = &self.l2
            && let Err(e) = l2.delete(name)
        {
            tracing::warn!(error = %e, "L2 delete failed");
        }
        self.lookup(name)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use nano_crypto::{Identity, OsRng};

    use super::*;

    fn record(mode: CryptoMode) -> UserRecord {
        let id = Identity::generate(mode, &mut OsRng).unwrap();
        let b = id.public_bundle();
        UserRecord {
            id: 7,
            username: "alice".into(),
            bundle: b.to_bytes(),
            fingerprint: b.fingerprint().0,
            min_mode: b.min_mode(),
            key_version: 3,
        }
    }

    #[test]
    fn an_l2_value_gives_back_the_row_and_a_short_or_modeless_one_gives_nothing() {
        let r = record(CryptoMode::Hybrid);
        let v = encode_l2(&r);
        assert_eq!(v.len(), L2_HEADER + r.bundle.len());
        let back = decode_l2("alice", &v).unwrap();
        assert_eq!(
            (back.id, back.key_version, back.fingerprint, back.min_mode),
            (r.id, r.key_version, r.fingerprint, r.min_mode)
        );
        assert_eq!((back.username.as_str(), &back.bundle), ("alice", &r.bundle));
        // Too short, no valid mode, no bundle.
        assert!(decode_l2("alice", &v[..L2_HEADER - 1]).is_none());
        assert!(decode_l2("alice", &v[..L2_HEADER]).is_none());
        let mut bad = v.clone();
        bad[L2_HEADER - 1] = 0xee;
        assert!(decode_l2("alice", &bad).is_none());
        // The older layout (id ‖ key version ‖ bundle) begins with the id's high byte, 0.
        let mut older = r.id.to_be_bytes().to_vec();
        older.extend_from_slice(&r.key_version.to_be_bytes());
        older.extend_from_slice(&r.bundle);
        assert!(decode_l2("alice", &older).is_none());
    }

    #[test]
    fn a_damaged_cached_copy_is_replaced_by_the_database_row_on_reload() {
        use crate::storage::sqlite::SqliteStorage;
        let storage = SqliteStorage::in_memory().unwrap();
        storage.migrate().unwrap();
        let metrics = Metrics::new(false, false).unwrap();
        let dir = Directory::new(
            Arc::new(storage),
            Some((10, Duration::from_secs(60))),
            None,
            metrics,
        );
        let id = Identity::generate(CryptoMode::Hybrid, &mut OsRng).unwrap();
        dir.register("alice", id.public_bundle(), 1).unwrap();
        let good = dir.lookup("alice").unwrap().unwrap();
        // A cached copy whose bundle is damaged: its keys are refused.
        let mut damaged = good.record.clone();
        let last = damaged.bundle.len() - 1;
        damaged.bundle[last] ^= 1;
        dir.l1()
            .unwrap()
            .insert("alice".into(), Arc::new(UserEntry::new(damaged)));
        assert!(dir.cached("alice").unwrap().bundle().is_err());
        // Reloaded from the database, the row decodes, and L1 holds it now.
        let again = dir.reload("alice").unwrap().unwrap();
        assert_eq!(again.bundle().unwrap().fingerprint(), good.fingerprint());
        assert!(dir.cached("alice").unwrap().bundle().is_ok());
        assert!(dir.reload("nobody").unwrap().is_none());
    }

    #[test]
    fn a_bundle_is_decoded_once_when_its_keys_are_needed() {
        let e = UserEntry::new(record(CryptoMode::Hybrid));
        assert!(!e.is_decoded());
        let fp = e.bundle().unwrap().fingerprint();
        assert!(e.is_decoded());
        assert_eq!(fp, e.fingerprint());
        assert_eq!(e.bundle().unwrap().min_mode(), CryptoMode::Hybrid);
    }

    #[test]
    fn a_stored_bundle_that_does_not_verify_or_match_its_row_is_corrupt_when_needed() {
        // A damaged proof of possession: the row still serves its bytes; its keys are refused.
        let mut r = record(CryptoMode::Hybrid);
        let last = r.bundle.len() - 1;
        r.bundle[last] ^= 1;
        let e = UserEntry::new(r);
        assert!(matches!(e.bundle(), Err(RelayError::Corrupt(_))));
        assert!(!e.is_decoded());
        // A valid bundle under another row's fingerprint or minimum mode.
        let mut r = record(CryptoMode::Hybrid);
        r.fingerprint[0] ^= 1;
        assert!(matches!(
            UserEntry::new(r).bundle(),
            Err(RelayError::Corrupt(m)) if m.contains("does not match")
        ));
        let mut r = record(CryptoMode::Hybrid);
        r.min_mode = CryptoMode::Quantum;
        assert!(matches!(
            UserEntry::new(r).bundle(),
            Err(RelayError::Corrupt(m)) if m.contains("does not match")
        ));
    }
}
