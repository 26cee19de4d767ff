//! Where a client keeps its session state, behind small store traits (in the spirit of
//! libsignal's stores): the prekey secrets it published, and its sessions with each contact.
//!
//! ```text
//! memory   MemoryStore: in process, for tests, benchmarks and short-lived clients
//! file     FileStore: the CLI's, encrypted files in the home directory (PROTOCOL.md §13)
//! ```
//!
//! Every save is atomic: a reader sees the previous state or the new one. The client saves
//! **before** it hands a message to the relay and **before** it hands a received message out
//! (so before it can be acknowledged): a crash at any point neither loses a message nor reuses
//! a message key.

mod file;
mod memory;

pub use file::FileStore;
pub use memory::MemoryStore;

use nano_crypto::CryptoMode;
use nano_crypto::session::{PrekeySecrets, Session};
use nano_proto::MessageId;
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

/// Most sessions kept per contact and mode: the one this side sends with, and the one a
/// simultaneous initiation or a re-initiation replaced (still needed for messages in flight).
pub const MAX_SESSIONS_PER_CONTACT: usize = 2;

/// A session and when it started.
pub struct SessionRecord {
    /// The session.
    pub session: Session,
    /// When this side created it (its clock, ms since the Unix epoch).
    pub started_ms: u64,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("mode", &self.session.mode())
            .field("started_ms", &self.started_ms)
            .finish_non_exhaustive()
    }
}

/// The prekey secrets of each mode this user published.
pub trait PrekeyStore: Send + Sync {
    /// The secrets of `mode`, if any were made.
    ///
    /// # Errors
    /// I/O, or a record that does not decrypt or decode ([`ClientError::Invalid`]).
    fn load_prekeys(&self, mode: CryptoMode) -> Result<Option<PrekeySecrets>>;
    /// Replaces the secrets of `prekeys.mode()`, atomically.
    ///
    /// # Errors
    /// I/O.
    fn store_prekeys(&self, prekeys: &PrekeySecrets) -> Result<()>;

    /// Runs `f` on the secrets of `mode` (`None` if none were made; `f` may create them) and
    /// saves them, atomically, when it returns `Ok(true)`; on `Ok(false)` or an error nothing
    /// is saved (and `f` must have left them as they were). The default loads and stores; a
    /// store that keeps them decoded runs `f` on them in place (no key derived again per
    /// handshake answered).
    ///
    /// # Errors
    /// `f`'s, and the store's.
    fn update_prekeys(
        &self,
        mode: CryptoMode,
        f: &mut dyn FnMut(&mut Option<PrekeySecrets>) -> Result<bool>,
    ) -> Result<()> {
        let mut secrets = self.load_prekeys(mode)?;
        if f(&mut secrets)?
            && let Some(s) = &secrets
        {
            self.store_prekeys(s)?;
        }
        Ok(())
    }
}

/// Sessions per contact and mode.
pub trait SessionStore: Send + Sync {
    /// The sessions with `peer` in `mode`, the one to send with first (at most
    /// [`MAX_SESSIONS_PER_CONTACT`]).
    ///
    /// # Errors
    /// I/O, or a record that does not decrypt or decode.
    fn load_sessions(&self, peer: &str, mode: CryptoMode) -> Result<Vec<SessionRecord>>;
    /// Replaces the sessions with `peer` in `mode`, atomically (an empty list deletes them).
    ///
    /// # Errors
    /// I/O.
    fn store_sessions(&self, peer: &str, mode: CryptoMode, records: &[SessionRecord])
    -> Result<()>;

    /// Runs `f` on the sessions with `peer` in `mode` (the one to send with first) and saves
    /// them, atomically, when it returns `Ok(true)`; on `Ok(false)` or an error nothing is
    /// saved (and `f` must have left them as they were). The default loads and stores; a
    /// store that keeps sessions decoded runs `f` on them in place.
    ///
    /// # Errors
    /// `f`'s, and the store's.
    fn update_sessions(
        &self,
        peer: &str,
        mode: CryptoMode,
        f: &mut dyn FnMut(&mut Vec<SessionRecord>) -> Result<bool>,
    ) -> Result<()> {
        let mut records = self.load_sessions(peer, mode)?;
        if f(&mut records)? {
            self.store_sessions(peer, mode, &records)?;
        }
        Ok(())
    }

    /// Whether this store's calls may block on I/O (then the client runs session work off
    /// the async workers); `false` for a store in memory.
    fn may_block(&self) -> bool {
        true
    }
}

/// Session payloads opened and not yet acknowledged, by message id: opening one moves the
/// ratchet past its key, so a redelivery after a crash (opened, state saved, not yet shown or
/// acknowledged) is handed out from here rather than lost.
pub trait ReceivedStore: Send + Sync {
    /// Keeps what payload `id` opened to (the [`crate::sessions::Opened`] encoding), atomically.
    ///
    /// # Errors
    /// I/O.
    fn save_received(&self, id: &MessageId, opened: &[u8]) -> Result<()>;
    /// What payload `id` opened to, if it was opened and not yet acknowledged.
    ///
    /// # Errors
    /// I/O, or a record that does not decrypt.
    fn load_received(&self, id: &MessageId) -> Result<Option<Zeroizing<Vec<u8>>>>;
    /// Forgets acknowledged payloads.
    ///
    /// # Errors
    /// I/O.
    fn remove_received(&self, ids: &[MessageId]) -> Result<()>;
}

/// Everything a client stores about sessions, and the lock that makes each load–use–save one
/// step: [`crate::Client`]s sharing a store, in one process or several, never use the same
/// state twice.
pub trait Store: PrekeyStore + SessionStore + ReceivedStore {
    /// Waits until no other holder (another client, another process) holds the store, and
    /// holds it until the returned guard drops.
    ///
    /// # Errors
    /// I/O (a lock file that cannot be opened or locked).
    fn lock(&self) -> Result<StoreLock<'_>>;
}

/// A held [`Store::lock`]: an in-process guard and, for stores shared between processes, a
/// locked file (unlocked when closed).
#[derive(Debug)]
pub struct StoreLock<'a> {
    _guard: std::sync::MutexGuard<'a, ()>,
    _file: Option<std::fs::File>,
}

impl<'a> StoreLock<'a> {
    /// Waits for `mutex` (a poisoned one is still a lock: the state it guards is saved
    /// atomically, never half-written).
    pub fn hold(mutex: &'a std::sync::Mutex<()>) -> Self {
        Self {
            _guard: mutex.lock().unwrap_or_else(|p| p.into_inner()),
            _file: None,
        }
    }

    /// Also holds `file`, already locked, until this drops (closing it unlocks it).
    pub fn with_file(self, file: std::fs::File) -> Self {
        Self {
            _file: Some(file),
            ..self
        }
    }
}

const SESSIONS_VERSION: u8 = 1;

/// The bytes of a list of session records:
/// `0x01 ‖ count (1) ‖ count × (started_ms (8) ‖ len (4) ‖ Session::to_bytes)`.
pub(crate) fn encode_sessions(records: &[SessionRecord]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![SESSIONS_VERSION]);
    let n = records.len().min(MAX_SESSIONS_PER_CONTACT);
    out.push(n as u8);
    for r in &records[..n] {
        let s = r.session.to_bytes();
        out.extend_from_slice(&r.started_ms.to_be_bytes());
        out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&s);
    }
    out
}

/// Parses [`encode_sessions`]' bytes.
///
/// # Errors
/// [`ClientError::Invalid`] for anything else.
pub(crate) fn decode_sessions(bytes: &[u8]) -> Result<Vec<SessionRecord>> {
    let bad = |what: &str| ClientError::Invalid(format!("stored sessions: {what}"));
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if version != SESSIONS_VERSION {
        return Err(bad("unknown version"));
    }
    let (&n, mut rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    if usize::from(n) > MAX_SESSIONS_PER_CONTACT {
        return Err(bad("too many sessions"));
    }
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (started, r) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
        let (len, r) = r.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| bad("truncated"))?) as usize;
        let (s, r) = r.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
        out.push(SessionRecord {
            session: Session::from_bytes(s).map_err(|e| bad(&e.to_string()))?,
            started_ms: u64::from_be_bytes(started.try_into().map_err(|_| bad("truncated"))?),
        });
        rest = r;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}
