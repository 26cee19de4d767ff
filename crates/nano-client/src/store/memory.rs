//! [`MemoryStore`]: session state in process memory. Sessions are kept decoded and updated in
//! place (`update_sessions`: no encoding per message); a load is a copy made through the same
//! encoding the file store writes. Prekey secrets are kept decoded too (`update_prekeys`: a
//! handshake answered derives no key pair again).

use std::collections::HashMap;
use std::sync::Mutex;

use nano_crypto::CryptoMode;
use nano_crypto::session::PrekeySecrets;
use nano_proto::MessageId;
use zeroize::Zeroizing;

use super::{
    PrekeyStore, ReceivedStore, SessionRecord, SessionStore, Store, StoreLock, decode_sessions,
    encode_sessions,
};
use crate::error::{ClientError, Result};

/// A contact and a mode.
type SessionKey = (String, CryptoMode);

/// Session state in memory; lost with the process.
#[derive(Default)]
pub struct MemoryStore {
    prekeys: Mutex<HashMap<CryptoMode, PrekeySecrets>>,
    sessions: Mutex<HashMap<SessionKey, Vec<SessionRecord>>>,
    lock: Mutex<()>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore(***)")
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PrekeyStore for MemoryStore {
    fn load_prekeys(&self, mode: CryptoMode) -> Result<Option<PrekeySecrets>> {
        let map = self.prekeys.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&mode).map(copy_prekeys).transpose()
    }

    fn store_prekeys(&self, prekeys: &PrekeySecrets) -> Result<()> {
        let copy = copy_prekeys(prekeys)?;
        let mut map = self.prekeys.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(prekeys.mode(), copy);
        Ok(())
    }

    fn update_prekeys(
        &self,
        mode: CryptoMode,
        f: &mut dyn FnMut(&mut Option<PrekeySecrets>) -> Result<bool>,
    ) -> Result<()> {
        let mut map = self.prekeys.lock().unwrap_or_else(|p| p.into_inner());
        let mut secrets = map.remove(&mode);
        // `f` leaves the secrets as they were unless it returns true: they go back either way.
        let r = f(&mut secrets);
        if let Some(s) = secrets {
            map.insert(mode, s);
        }
        r.map(|_| ())
    }
}

/// A copy of `prekeys` (secrets are not `Clone`: the copy goes through their encoding).
fn copy_prekeys(prekeys: &PrekeySecrets) -> Result<PrekeySecrets> {
    PrekeySecrets::from_bytes(&prekeys.to_bytes())
        .map_err(|e| ClientError::Invalid(format!("stored prekeys: {e}")))
}

impl MemoryStore {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Vec<SessionRecord>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A copy of `records` (sessions are not `Clone`: the copy goes through their encoding).
fn copy(records: &[SessionRecord]) -> Result<Vec<SessionRecord>> {
    decode_sessions(&encode_sessions(records))
}

impl SessionStore for MemoryStore {
    fn load_sessions(&self, peer: &str, mode: CryptoMode) -> Result<Vec<SessionRecord>> {
        match self.sessions().get(&(peer.to_owned(), mode)) {
            Some(records) => copy(records),
            None => Ok(Vec::new()),
        }
    }

    fn store_sessions(
        &self,
        peer: &str,
        mode: CryptoMode,
        records: &[SessionRecord],
    ) -> Result<()> {
        let key = (peer.to_owned(), mode);
        if records.is_empty() {
            self.sessions().remove(&key);
        } else {
            let records = copy(records)?;
            self.sessions().insert(key, records);
        }
        Ok(())
    }

    fn update_sessions(
        &self,
        peer: &str,
        mode: CryptoMode,
        f: &mut dyn FnMut(&mut Vec<SessionRecord>) -> Result<bool>,
    ) -> Result<()> {
        let key = (peer.to_owned(), mode);
        let mut map = self.sessions();
        let mut records = map.remove(&key).unwrap_or_default();
        // `f` leaves the records as they were unless it returns true: they go back either way.
        let r = f(&mut records);
        if !records.is_empty() {
            map.insert(key, records);
        }
        r.map(|_| ())
    }

    fn may_block(&self) -> bool {
        false
    }
}

/// Keeps nothing: a process crash loses a memory store whole, and a redelivery within the
/// process is deduplicated by the connection.
impl ReceivedStore for MemoryStore {
    fn save_received(&self, _id: &MessageId, _opened: &[u8]) -> Result<()> {
        Ok(())
    }

    fn load_received(&self, _id: &MessageId) -> Result<Option<Zeroizing<Vec<u8>>>> {
        Ok(None)
    }

    fn remove_received(&self, _ids: &[MessageId]) -> Result<()> {
        Ok(())
    }
}

impl Store for MemoryStore {
    fn lock(&self) -> Result<StoreLock<'_>> {
        Ok(StoreLock::hold(&self.lock))
    }
}
