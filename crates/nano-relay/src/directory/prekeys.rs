//! Signed prekeys through the cache levels: L1 → L2 → the database, like bundles. A new record
//! is written to the database first, then every cached copy is dropped on every relay (the
//! same invalidation notice as a key rotation). One-time prekeys never pass through a cache:
//! each is claimed from the database, once.

use std::sync::{Arc, MutexGuard};

use nano_crypto::{CryptoMode, MonotonicClock};

use super::Directory;
use super::l1_cache::TtlCache;
use crate::error::RelayError;
use crate::storage::{SignedRecord, UserRecord};

type PrekeyCache = TtlCache<(String, CryptoMode), Arc<[u8]>, MonotonicClock>;

impl Directory {
    pub(super) fn prekeys_l1(&self) -> Option<MutexGuard<'_, PrekeyCache>> {
        self.prekeys_l1
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The newest signed-prekeys record (`SignedPrekeys::to_bytes`) of `user` in `mode`
    /// (blocking); `None` when the user has published none.
    ///
    /// # Errors
    /// Storage errors; cache failures fall through to the database.
    pub fn signed_prekeys(
        &self,
        user: &UserRecord,
        mode: CryptoMode,
    ) -> Result<Option<Arc<[u8]>>, RelayError> {
        let key = (user.username.clone(), mode);
        if let Some(hit) = self.prekeys_l1().and_then(|mut c| c.get(&key)) {
            self.metrics.l1_hits.inc();
            return Ok(Some(hit));
        }
        if self.prekeys_l1.is_some() {
            self.metrics.l1_misses.inc();
        }
        let ticket = self.prekeys_l1().map(|c| c.begin_load());
        let found = self.signed_prekeys_lower(user, mode)?;
        if let (Some(r), Some(t), Some(mut c)) = (&found, ticket, self.prekeys_l1()) {
            c.insert_loaded(key, Arc::clone(r), t);
        }
        Ok(found)
    }

    fn signed_prekeys_lower(
        &self,
        user: &UserRecord,
        mode: CryptoMode,
    ) -> Result<Option<Arc<[u8]>>, RelayError> {
        if let Some(l2) = &self.l2 {
            match l2.get_prekeys(&user.username, mode) {
                Ok(Some(v)) => {
                    self.metrics.l2_hits.inc();
                    return Ok(Some(v.into()));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "L2 lookup failed; reading the database"),
            }
            self.metrics.l2_misses.inc();
        }
        let Some(record) = self.storage.signed_prekeys(user.id, mode)? else {
            return Ok(None);
        };
        if let Some(l2) = &self.l2
            && let Err(e) = l2.put_prekeys(&user.username, mode, &record)
        {
            tracing::warn!(error = %e, "L2 fill failed");
        }
        Ok(Some(record.into()))
    }

    /// Stores a verified signed-prekeys record of `name` (blocking), then drops every cached
    /// copy on every relay.
    ///
    /// # Errors
    /// Storage errors.
    pub fn put_signed_prekeys(&self, name: &str, r: &SignedRecord<'_>) -> Result<(), RelayError> {
        self.storage.put_signed_prekeys(r)?;
        self.invalidate_everywhere(name);
        Ok(())
    }
}
