//! Encrypting and decrypting session messages: symmetric chains, the X25519 DH ratchet
//! (classical, hybrid; Double Ratchet spec §3), the KEM ratchet's epoch keys (hybrid, quantum)
//! and skipped keys.
//!
//! Decryption is transactional: every new value is computed first, and the session changes only
//! after the AEAD has authenticated the message, so a forged or replayed message leaves it as
//! it was.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;

use super::chain::{self, Chain};
use super::kem_ratchet::{MAX_CHUNK, Update};
use super::message::{Chunk, Header, chunk_len};
use super::skipped::{ChainId, MAX_SKIP_PER_CHAIN, SkippedKey};
use super::{Session, SessionError};
use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;
use crate::primitives::x25519::{self, EphemeralX25519};
use crate::secret::SymmetricKey;

type Result<T> = core::result::Result<T, SessionError>;

/// Every message key is used once, so the nonce can be constant.
const NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];
/// Past receiving ratchet keys remembered to tell a replay from a new ratchet step.
pub(crate) const OLD_RATCHET_KEYS: usize = 16;
/// The chain id of quantum mode's single receiving chain.
const QUANTUM_CHAIN: ChainId = [0; 32];
/// Largest plaintext of one session message: 65,536 bytes, as for sealed envelopes.
pub const MAX_SESSION_PLAINTEXT: usize = crate::envelope::MAX_PLAINTEXT_LEN;

/// The DH ratchet's state (classical, hybrid).
pub(crate) struct DhState {
    pub(crate) root: SymmetricKey,
    /// Our current ratchet key pair (none for a responder that has not sent yet).
    pub(crate) dhs: Option<EphemeralX25519>,
    /// The peer's current ratchet key.
    pub(crate) dhr: Option<[u8; 32]>,
    /// The peer's earlier ratchet keys, newest last.
    pub(crate) old_dhr: VecDeque<[u8; 32]>,
    /// The length of our previous sending chain (`pn` in our headers).
    pub(crate) pn: u32,
}

impl DhState {
    pub(crate) fn new(
        root: SymmetricKey,
        dhs: Option<EphemeralX25519>,
        dhr: Option<[u8; 32]>,
    ) -> Self {
        Self {
            root,
            dhs,
            dhr,
            old_dhr: VecDeque::new(),
            pn: 0,
        }
    }
}

/// Keys derived while locating a message's key, applied only if it authenticates.
struct Located {
    key: SymmetricKey,
    /// Use a stored skipped key (its position).
    used_skipped: Option<usize>,
    /// Keys skipped over, to store.
    skipped: Vec<SkippedKey>,
    /// The receiving chain after this message.
    recv: Option<Chain>,
    /// A DH ratchet step: the new root and the peer's new ratchet key.
    step: Option<(SymmetricKey, [u8; 32])>,
}

/// Walks `chain` from index `from` to `to`, returning the skipped keys, the key at `to` and the
/// chain after it.
fn walk(
    id: &ChainId,
    key: &SymmetricKey,
    from: u32,
    to: u32,
    max_epoch: u32,
) -> Result<(Vec<SkippedKey>, SymmetricKey, Chain)> {
    let skip = u64::from(to) - u64::from(from);
    if skip > u64::from(MAX_SKIP_PER_CHAIN) {
        return Err(SessionError::TooFarAhead {
            skip,
            limit: MAX_SKIP_PER_CHAIN,
        });
    }
    let mut skipped = Vec::with_capacity(skip as usize);
    let mut c = Chain {
        key: chain::key32(key.expose()),
        n: from,
    };
    while c.n < to {
        let n = c.n;
        skipped.push(SkippedKey {
            chain: *id,
            n,
            max_epoch,
            key: Box::new(c.step()),
        });
    }
    let mk = c.step();
    Ok((skipped, mk, c))
}

/// Keys skipped at the end of a receiving chain (up to the sender's `pn`).
fn finish_chain(id: &ChainId, recv: &Chain, pn: u32, max_epoch: u32) -> Result<Vec<SkippedKey>> {
    if pn <= recv.n {
        return Ok(Vec::new());
    }
    let skip = u64::from(pn - recv.n);
    if skip > u64::from(MAX_SKIP_PER_CHAIN) {
        return Err(SessionError::TooFarAhead {
            skip,
            limit: MAX_SKIP_PER_CHAIN,
        });
    }
    let (mut keys, last, _) = walk(id, &recv.key, recv.n, pn - 1, max_epoch)?;
    keys.push(SkippedKey {
        chain: *id,
        n: pn - 1,
        max_epoch,
        key: Box::new(last),
    });
    Ok(keys)
}

impl Session {
    /// Encrypts `plaintext` and advances the session. Persist the session (its
    /// [`Session::to_bytes`]) before handing the message to the network, so a crash can never
    /// reuse a message key. The message adds [`Session::steady_overhead`] bytes or, on a new
    /// ratchet step, the same (the ratchet key rides on every message).
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for a plaintext over 65,536 bytes; RNG or primitive failures
    /// (the session is then unchanged).
    pub fn encrypt(&mut self, plaintext: &[u8], rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_SESSION_PLAINTEXT {
            return Err(SessionError::Malformed(CryptoError::TooLarge {
                what: "session plaintext",
                max: MAX_SESSION_PLAINTEXT,
                got: plaintext.len(),
            }));
        }
        if self.send.is_none() {
            self.dh_send_step(rng)?;
        }
        let send = self
            .send
            .as_mut()
            .ok_or(CryptoError::Internal("session without a sending chain"))?;
        if send.n == u32::MAX {
            return Err(SessionError::TooFarAhead {
                skip: u64::from(u32::MAX),
                limit: MAX_SKIP_PER_CHAIN,
            });
        }
        let n = send.n;
        let mk = send.step();
        let (epoch, chunk) = match self.kem.as_mut() {
            Some(k) => k.outgoing(),
            None => (0, None),
        };
        let chunk_bytes: Option<(u8, [u8; MAX_CHUNK])> = chunk;
        let dh = self.dh.as_ref();
        let header = Header {
            mode: self.mode,
            epoch,
            dh: dh.and_then(|d| d.dhs.as_ref()).map(|k| *k.public_key()),
            pn: dh.map_or(0, |d| d.pn),
            n,
            chunk: chunk_bytes.as_ref().map(|(i, data)| Chunk {
                index: *i,
                data: &data[..chunk_len(self.mode)],
            }),
        };
        let mut out =
            Vec::with_capacity(super::message::MAX_HEADER_LEN + plaintext.len() + TAG_LEN);
        header.encode(&mut out);
        let header_len = out.len();
        out.extend_from_slice(plaintext);
        let epoch_key = match &self.kem {
            Some(k) => Some(
                k.key(epoch)
                    .ok_or(CryptoError::Internal("sending epoch key"))?,
            ),
            None => None,
        };
        let key = chain::message_key(mk, epoch_key);
        AeadKey::new(self.aead, &key)?.seal_in_place(&NONCE, &mut out, header_len)?;
        Ok(out)
    }

    /// Starts a new sending chain after the peer's ratchet key changed (`KDF_RK`).
    fn dh_send_step(&mut self, rng: &mut impl CryptoRngCore) -> Result<()> {
        let dh = self
            .dh
            .as_mut()
            .ok_or(CryptoError::Internal("sending chain missing"))?;
        let peer = dh.dhr.ok_or(CryptoError::Internal("no peer ratchet key"))?;
        let mut secret = zeroize::Zeroizing::new([0u8; x25519::SECRET_KEY_LEN]);
        rng.try_fill_bytes(&mut secret[..])
            .map_err(|_| CryptoError::Rng)?;
        let next = EphemeralX25519::from_secret(&secret)?;
        let out = next.diffie_hellman(&peer)?;
        let (root, ck) = chain::root_step(&dh.root, out.expose())?;
        dh.root = root;
        dh.dhs = Some(next);
        self.send = Some(Chain::new(ck));
        Ok(())
    }

    /// Decrypts a session message and advances the session. Persist the session before
    /// acknowledging the message. Any order of arrival works within the skipped-key bounds.
    ///
    /// # Errors
    /// [`SessionError::Malformed`], [`SessionError::ModeMismatch`],
    /// [`SessionError::TooFarAhead`], [`SessionError::Duplicate`],
    /// [`SessionError::UnknownEpoch`], [`SessionError::DecryptFailed`]; the session is then
    /// unchanged.
    pub fn decrypt(&mut self, message: &[u8], rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        let max = super::message::MAX_HEADER_LEN + MAX_SESSION_PLAINTEXT + TAG_LEN;
        if message.len() > max {
            return Err(SessionError::Malformed(CryptoError::TooLarge {
                what: "session message",
                max,
                got: message.len(),
            }));
        }
        let (h, header_len) = Header::decode(message)?;
        if h.mode != self.mode {
            return Err(SessionError::ModeMismatch {
                expected: self.mode,
                got: h.mode,
            });
        }
        if message.len() < header_len + TAG_LEN {
            return Err(SessionError::Malformed(CryptoError::Truncated {
                what: "session message tag",
            }));
        }
        let epoch_key = match &self.kem {
            Some(k) => Some(k.key(h.epoch).ok_or(SessionError::UnknownEpoch(h.epoch))?),
            None => None,
        };
        let located = self.locate(&h)?;
        // A new position in the peer's sending order cannot use an older epoch than one already
        // accepted (an honest sender's epochs only grow): otherwise a stolen state could keep
        // forging under an old epoch key for as long as that key stays in the window.
        if let Some(k) = &self.kem
            && located.used_skipped.is_none()
            && h.epoch < k.peer_max_epoch
        {
            return Err(SessionError::DecryptFailed);
        }
        let key = chain::message_key(chain::key32(located.key.expose()), epoch_key);
        let plaintext = AeadKey::new(self.aead, &key)?
            .open(&NONCE, &message[..header_len], &message[header_len..])
            .map_err(|_| SessionError::DecryptFailed)?;
        let update = match &self.kem {
            Some(k) => k.prepare(h.epoch, h.chunk, rng)?,
            None => Update::None,
        };
        self.commit(located, update, h.epoch);
        Ok(plaintext)
    }

    /// Finds (without changing anything) the key of the message with header `h`.
    fn locate(&self, h: &Header<'_>) -> Result<Located> {
        let id: ChainId = h.dh.unwrap_or(QUANTUM_CHAIN);
        if let Some(pos) = self.skipped.find(&id, h.n) {
            let key = self
                .skipped
                .get(pos)
                .ok_or(CryptoError::Internal("skipped key"))?;
            return Ok(Located {
                key: chain::key32(key.expose()),
                used_skipped: Some(pos),
                skipped: Vec::new(),
                recv: None,
                step: None,
            });
        }
        let current = match &self.dh {
            Some(dh) => dh.dhr == Some(id),
            None => true,
        };
        if current {
            let recv = self.recv.as_ref().ok_or(SessionError::DecryptFailed)?;
            if h.n < recv.n {
                return Err(SessionError::Duplicate);
            }
            let (skipped, key, next) = walk(&id, &recv.key, recv.n, h.n, h.epoch)?;
            return Ok(Located {
                key,
                used_skipped: None,
                skipped,
                recv: Some(next),
                step: None,
            });
        }
        // A ratchet key other than the current one: an old chain (a replay, or a key evicted)
        // or the peer's next ratchet step.
        let dh = self.dh.as_ref().ok_or(SessionError::DecryptFailed)?;
        if dh.old_dhr.contains(&id) || self.skipped.has_chain(&id) {
            return Err(SessionError::Duplicate);
        }
        // The DH below rejects small-order points (all-zero output).
        x25519::check_canonical(&id)?;
        let mine = dh.dhs.as_ref().ok_or(SessionError::DecryptFailed)?;
        let mut skipped = match (&self.recv, &dh.dhr) {
            (Some(recv), Some(old)) => finish_chain(old, recv, h.pn, h.epoch)?,
            _ => Vec::new(),
        };
        let out = mine.diffie_hellman(&id)?;
        let (root, ck) = chain::root_step(&dh.root, out.expose())?;
        let (more, key, next) = walk(&id, &ck, 0, h.n, h.epoch)?;
        skipped.extend(more);
        Ok(Located {
            key,
            used_skipped: None,
            skipped,
            recv: Some(next),
            step: Some((root, id)),
        })
    }

    /// Applies a located key and a KEM update after the message authenticated.
    fn commit(&mut self, located: Located, update: Update, epoch: u32) {
        if let Some(pos) = located.used_skipped {
            self.skipped.remove(pos);
        }
        self.skipped.extend(located.skipped);
        if let Some(recv) = located.recv {
            self.recv = Some(recv);
        }
        if let (Some((root, peer)), Some(dh)) = (located.step, self.dh.as_mut()) {
            if let Some(old) = dh.dhr.replace(peer) {
                dh.old_dhr.push_back(old);
                if dh.old_dhr.len() > OLD_RATCHET_KEYS {
                    dh.old_dhr.pop_front();
                }
            }
            dh.root = root;
            // Our next message starts a new sending chain against the peer's new key.
            dh.pn = self.send.as_ref().map_or(0, |c| c.n);
            self.send = None;
        }
        if let Some(k) = self.kem.as_mut() {
            if located.used_skipped.is_none() {
                k.peer_max_epoch = k.peer_max_epoch.max(epoch);
            }
            if let Some(oldest) = k.apply(update) {
                self.skipped.forget_epochs_before(oldest);
            }
        }
    }
}
