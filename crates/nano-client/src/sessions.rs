//! The session core, free of I/O (PROTOCOL.md §14): what to send a contact — a message on the
//! current session, or a handshake made from a prekey bundle the caller fetched — and what a
//! received session payload opens to. It reads and writes the [`Store`], nothing else; the
//! connection feeds it and sends what it returns.
//!
//! The store's lock covers each load–use–save, so two sends (in one process or two sharing a
//! store) never use the same message key, and the state is saved before the payload is returned: a payload the relay has was always saved
//! first. A failed decryption changes nothing (each load is a fresh copy).

use std::sync::Arc;

use nano_crypto::session::{PrekeyBundle, Session, SessionError, TYPE_HANDSHAKE};
use nano_crypto::{AeadId, CryptoMode, Identity, OsRng, PublicBundle};

use crate::error::{ClientError, Result};
use crate::store::{MAX_SESSIONS_PER_CONTACT, SessionRecord, Store};
use zeroize::Zeroizing;

/// A received session payload, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The session's mode.
    pub mode: CryptoMode,
    /// Whether it was a handshake (a new session).
    pub handshake: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("plaintext_len", &self.plaintext.len())
            .field("mode", &self.mode)
            .field("handshake", &self.handshake)
            .finish()
    }
}

/// What `contacts show` prints about one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// The mode.
    pub mode: CryptoMode,
    /// The KEM epoch this side sends with.
    pub epoch: u32,
    /// Messages since the last post-quantum refresh.
    pub since_pq_refresh: u64,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
}

/// Sessions over a store.
pub struct Sessions {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(***)")
    }
}

/// A kept received message: `mode (1) ‖ handshake (1: 0 | 1) ‖ len (1) ‖ sender ‖ plaintext`.
fn encode_received(o: &Opened, peer: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(3 + peer.len() + o.plaintext.len()));
    out.push(o.mode.to_byte());
    out.push(u8::from(o.handshake));
    // Usernames are at most 32 bytes.
    out.push(u8::try_from(peer.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(&o.plaintext);
    out
}

/// [`encode_received`]'s bytes, if they decode and were received from `peer` (a relay that
/// names another sender for the same bytes gets nothing).
fn decode_received(b: &[u8], peer: &str) -> Option<Opened> {
    let (&[mode, handshake, len], rest) = b.split_first_chunk::<3>()?;
    let (sender, plaintext) = rest.split_at_checked(usize::from(len))?;
    if sender != peer.as_bytes() || handshake > 1 {
        return None;
    }
    Some(Opened {
        plaintext: plaintext.to_vec(),
        mode: CryptoMode::from_byte(mode).ok()?,
        handshake: handshake == 1,
    })
}

/// What a payload that does not open means: a session this side no longer holds (its state or
/// prekey secrets lost, or older than the peer's), or a refusal.
fn not_opened(peer: &str, mode: CryptoMode, e: &SessionError) -> ClientError {
    match e {
        SessionError::UnknownPrekey { .. }
        | SessionError::UnknownEpoch(_)
        | SessionError::DecryptFailed => ClientError::SessionUnknown {
            sender: peer.to_owned(),
            mode,
        },
        _ => rejected(peer, e),
    }
}

fn rejected(peer: &str, e: &SessionError) -> ClientError {
    ClientError::Rejected {
        sender: peer.to_owned(),
        reason: format!("session: {e}"),
    }
}

impl Sessions {
    /// Sessions kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `f` on these sessions: in place when `light` (a message's microseconds of work,
    /// not a handshake's KEM and signatures) and the store does no I/O, else on tokio's
    /// blocking pool, so async workers never wait on a disk or a millisecond of crypto.
    ///
    /// # Errors
    /// `f`'s; [`ClientError::Invalid`] if the blocking task stopped.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        light: bool,
        f: impl FnOnce(&Sessions) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if light && !self.store.may_block() {
            return f(self);
        }
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|_| ClientError::Invalid("session work stopped".into()))?
    }

    /// Encrypts `plaintext` on the current session with `peer` in `mode`, saving the advanced
    /// state before returning the session message; `None` when there is no session yet.
    ///
    /// # Errors
    /// The store's; encryption failures.
    pub fn encrypt(
        &self,
        peer: &str,
        mode: CryptoMode,
        plaintext: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let _locked = self.store.lock()?;
        self.encrypt_locked(peer, mode, plaintext)
    }

    /// [`Sessions::encrypt`], the store's lock held.
    fn encrypt_locked(
        &self,
        peer: &str,
        mode: CryptoMode,
        plaintext: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let mut message = None;
        self.store.update_sessions(peer, mode, &mut |records| {
            let Some(current) = records.first_mut() else {
                return Ok(false);
            };
            let m = current
                .session
                .encrypt(plaintext, &mut OsRng)
                .map_err(|e| ClientError::Invalid(format!("session encryption: {e}")))?;
            message = Some(m);
            Ok(true)
        })?;
        Ok(message)
    }

    /// Starts a session with `peer` from its prekey bundle (`bundle`: PROTOCOL.md §14.2 bytes,
    /// verified under `peer_bundle` here) and returns the handshake carrying `plaintext`. The
    /// new session becomes the one to send with, saved before the handshake is returned.
    ///
    /// When a session of the mode appeared while the bundle was fetched (another send, another
    /// client or process on the same store), the new one is dropped and `plaintext` goes on
    /// that session instead: one sender never starts two sessions with a peer at once, which
    /// the peer could not all keep.
    ///
    /// # Errors
    /// [`ClientError::Rejected`] for a bundle that does not decode or verify; the store's.
    pub fn initiate(
        &self,
        me: &Identity,
        peer: &str,
        peer_bundle: &PublicBundle,
        bundle: &[u8],
        aead: AeadId,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let bundle = PrekeyBundle::from_bytes(bundle).map_err(|e| rejected(peer, &e))?;
        let (session, handshake) =
            Session::initiate(me, peer_bundle, &bundle, aead, plaintext, &mut OsRng)
                .map_err(|e| rejected(peer, &e))?;
        let _locked = self.store.lock()?;
        if let Some(message) = self.encrypt_locked(peer, session.mode(), plaintext)? {
            return Ok(message);
        }
        self.push(peer, session)?;
        Ok(handshake)
    }

    /// Puts `session` first among the sessions with `peer`, keeping the previous one.
    fn push(&self, peer: &str, session: Session) -> Result<()> {
        let mode = session.mode();
        let mut session = Some(session);
        self.store.update_sessions(peer, mode, &mut |records| {
            let Some(session) = session.take() else {
                return Ok(false);
            };
            records.insert(
                0,
                SessionRecord {
                    session,
                    started_ms: nano_proto::now_ms(),
                },
            );
            records.truncate(MAX_SESSIONS_PER_CONTACT);
            Ok(true)
        })
    }

    /// Opens a session handshake or message from `peer` (whose identity is `peer_bundle`),
    /// saving the new or advanced session (and, for a handshake, the prekey secrets without
    /// the consumed one-time prekey) before returning the plaintext.
    ///
    /// # Errors
    /// [`ClientError::SessionUnknown`] for a payload on no session or prekey this side holds
    /// (`unknown_prekey`, `unknown_epoch`, `decrypt_failed` on every session held);
    /// [`ClientError::Rejected`] for one that does not open; the store's.
    pub fn open(
        &self,
        me: &Identity,
        peer: &str,
        peer_bundle: &PublicBundle,
        payload: &[u8],
    ) -> Result<Opened> {
        let mode = nano_crypto::session::payload_mode(payload).map_err(|e| rejected(peer, &e))?;
        let id = nano_proto::payload::session_message_id(payload);
        let _locked = self.store.lock()?;
        // Opened before and not acknowledged (a crash after the state was saved): the ratchet
        // is past its key, the plaintext was kept.
        if let Some(kept) = self.store.load_received(&id)? {
            return decode_received(&kept, peer).ok_or_else(|| ClientError::Rejected {
                sender: peer.to_owned(),
                reason: "a message already received, now from another sender".into(),
            });
        }
        if payload.first() == Some(&TYPE_HANDSHAKE) {
            let mut opened = None;
            self.store.update_prekeys(mode, &mut |slot| {
                // No prekey secrets of the mode: lost with this device's state.
                let prekeys = slot.as_mut().ok_or_else(|| ClientError::SessionUnknown {
                    sender: peer.to_owned(),
                    mode,
                })?;
                let r = Session::respond(me, prekeys, peer_bundle, payload, &mut OsRng)
                    .map_err(|e| not_opened(peer, mode, &e))?;
                let o = Opened {
                    plaintext: r.plaintext,
                    mode,
                    handshake: true,
                };
                // The plaintext first, then the session, then (when this returns) the prekeys
                // without the one-time secret: a crash between any two leaves what is needed to
                // open it again or to hand it out again, never a handshake that can no longer
                // be answered.
                self.store.save_received(&id, &encode_received(&o, peer))?;
                self.push(peer, r.session)?;
                opened = Some(o);
                Ok(true)
            })?;
            return opened.ok_or_else(|| ClientError::Invalid("handshake not opened".into()));
        }
        // A failed `decrypt` leaves its session exactly as it was (§14.7), so the next one is
        // tried on the same state, and nothing is saved unless one opens.
        let mut last = None;
        let mut opened = None;
        self.store.update_sessions(peer, mode, &mut |records| {
            for r in records.iter_mut() {
                match r.session.decrypt(payload, &mut OsRng) {
                    Ok(plaintext) => {
                        let o = Opened {
                            plaintext,
                            mode,
                            handshake: false,
                        };
                        // The plaintext before the state that spent its key.
                        self.store.save_received(&id, &encode_received(&o, peer))?;
                        opened = Some(o);
                        return Ok(true);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Ok(false)
        })?;
        if let Some(o) = opened {
            return Ok(o);
        }
        Err(match last {
            Some(e) => not_opened(peer, mode, &e),
            None => ClientError::SessionUnknown {
                sender: peer.to_owned(),
                mode,
            },
        })
    }

    /// Drops the sessions with `peer` in `mode` that started before `before_ms` (a notice
    /// said the peer no longer holds them, §14.14); returns how many.
    ///
    /// # Errors
    /// The store's.
    pub fn forget(&self, peer: &str, mode: CryptoMode, before_ms: u64) -> Result<usize> {
        let _locked = self.store.lock()?;
        let mut dropped = 0;
        self.store.update_sessions(peer, mode, &mut |records| {
            let had = records.len();
            records.retain(|r| r.started_ms >= before_ms);
            dropped = had - records.len();
            Ok(dropped > 0)
        })?;
        Ok(dropped)
    }

    /// The sessions with `peer`, per mode, the one to send with first.
    ///
    /// # Errors
    /// The store's.
    pub fn info(&self, peer: &str) -> Result<Vec<SessionInfo>> {
        let mut out = Vec::new();
        for mode in CryptoMode::ALL {
            for r in self.store.load_sessions(peer, mode)? {
                out.push(SessionInfo {
                    mode,
                    epoch: r.session.epoch(),
                    since_pq_refresh: r.session.messages_since_pq_refresh(),
                    started_ms: r.started_ms,
                });
            }
        }
        Ok(out)
    }
}
