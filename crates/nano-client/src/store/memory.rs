//! [`MemoryStore`]: session state in process memory, encoded as the file store encodes it (so
//! every load is a fresh copy, as after a restart).

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
    prekeys: Mutex<HashMap<CryptoMode, Zeroizing<Vec<u8>>>>,
    sessions: Mutex<HashMap<SessionKey, Zeroizing<Vec<u8>>>>,
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
        map.get(&mode)
            .map(|b| {
                PrekeySecrets::from_bytes(b)
                    .map_err(|e| ClientError::Invalid(format!("stored prekeys: {e}")))
            })
            .transpose()
    }

    fn store_prekeys(&self, prekeys: &PrekeySecrets) -> Result<()> {
        let mut map = self.prekeys.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(prekeys.mode(), prekeys.to_bytes());
        Ok(())
    }
}

impl SessionStore for MemoryStore {
    fn load_sessions(&self, peer: &str, mode: CryptoMode) -> Result<Vec<SessionRecord>> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&(peer.to_owned(), mode)) {
            Some(b) => decode_sessions(b),
            None => Ok(Vec::new()),
        }
    }

    fn store_sessions(
        &self,
        peer: &str,
        mode: CryptoMode,
        records: &[SessionRecord],
    ) -> Result<()> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (peer.to_owned(), mode);
        if records.is_empty() {
            map.remove(&key);
        } else {
            map.insert(key, encode_sessions(records));
        }
        Ok(())
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
