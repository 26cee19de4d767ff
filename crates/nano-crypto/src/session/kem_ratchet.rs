//! The sparse KEM ratchet: a fresh ML-KEM shared secret per epoch, carried in small chunks on
//! ordinary messages (hybrid: ML-KEM-768, 9-byte chunks; quantum: ML-KEM-1024, 42-byte chunks).
//!
//! Epoch `k` is set up by one KEM exchange. Its *encapsulation-key sender* is the initiator for
//! odd `k` and the responder for even `k`; the other side sends the ciphertext:
//!
//! 1. The ek sender makes a key pair and sends the encapsulation key, chunk by chunk, on every
//!    message (cycling through the chunks until the exchange completes).
//! 2. The other side, once it holds every chunk, encapsulates, derives epoch key `k` and sends
//!    the ciphertext the same way, but keeps *sending* with epoch `k-1`.
//! 3. The ek sender, once it holds every ciphertext chunk, decapsulates, derives epoch key `k`
//!    and sends with epoch `k` from then on.
//! 4. The other side, on the first message of epoch `k`, sends with `k` too, and becomes the ek
//!    sender of epoch `k+1`.
//!
//! A side only sends with an epoch the peer already holds, so every message decrypts whatever
//! the order of arrival. Chunks ride in the header: a chunk in a message of epoch `e` belongs to
//! epoch `e + 1`; anything else is a stale repeat and ignored.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::chain;
use super::message::{Chunk, chunk_len};
use crate::error::{CryptoError, Result};
use crate::mode::CryptoMode;
use crate::primitives::mlkem::{
    self, MlKem768KeyPair, MlKem768PublicKey, MlKem1024KeyPair, MlKem1024PublicKey,
};
use crate::secret::SymmetricKey;

/// The largest chunk of any mode.
pub(crate) const MAX_CHUNK: usize = chunk_len(CryptoMode::Quantum);

/// Epoch keys kept for late messages (the current one and up to 15 before it).
pub(crate) const EPOCH_WINDOW: usize = 16;

/// Encapsulation-key length of the ratchet KEM of a mode.
pub(crate) const fn ek_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Quantum => MlKem1024PublicKey::LEN,
        _ => MlKem768PublicKey::LEN,
    }
}

/// Ciphertext length of the ratchet KEM of a mode.
pub(crate) const fn ct_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Quantum => MlKem1024PublicKey::CIPHERTEXT_LEN,
        _ => MlKem768PublicKey::CIPHERTEXT_LEN,
    }
}

/// Number of chunks of an item of `len` bytes.
pub(crate) const fn chunks(mode: CryptoMode, len: usize) -> usize {
    len.div_ceil(chunk_len(mode))
}

/// An item (encapsulation key or ciphertext) being assembled from chunks.
#[derive(Clone)]
pub(crate) struct ChunkBuf {
    pub(crate) data: Vec<u8>,
    pub(crate) have: Vec<bool>,
}

impl ChunkBuf {
    pub(crate) fn new(mode: CryptoMode, len: usize) -> Self {
        Self {
            data: vec![0u8; chunks(mode, len) * chunk_len(mode)],
            have: vec![false; chunks(mode, len)],
        }
    }

    /// Stores a chunk; ignores an index out of range.
    fn put(&mut self, c: &Chunk<'_>) {
        let i = usize::from(c.index);
        let size = c.data.len();
        if let (Some(h), Some(slot)) = (
            self.have.get_mut(i),
            self.data.get_mut(i * size..(i + 1) * size),
        ) {
            slot.copy_from_slice(c.data);
            *h = true;
        }
    }

    /// Whether `c` is the one chunk still missing (the only case that needs a copy of the
    /// buffer to finish the item before anything is committed).
    fn completes_with(&self, c: &Chunk<'_>) -> bool {
        let i = usize::from(c.index);
        self.have.get(i) == Some(&false) && self.have.iter().enumerate().all(|(j, h)| *h || j == i)
    }

    /// Whether `c` adds nothing (a repeat, or an index out of range).
    fn redundant(&self, c: &Chunk<'_>) -> bool {
        self.have.get(usize::from(c.index)) != Some(&false)
    }
}

/// Where the exchange for the next epoch stands.
pub(crate) enum Pending {
    /// We send the encapsulation key of `epoch` and collect the ciphertext.
    SendingEk {
        epoch: u32,
        seed: Zeroizing<[u8; mlkem::SEED_LEN]>,
        dk: Zeroizing<Vec<u8>>,
        ek: Vec<u8>,
        next: u16,
        ct: ChunkBuf,
    },
    /// We collect the encapsulation key of `epoch`.
    ReceivingEk { epoch: u32, ek: ChunkBuf },
    /// We hold epoch key `epoch` and send its ciphertext until the peer sends with it.
    Encapsulated { epoch: u32, ct: Vec<u8>, next: u16 },
}

/// The KEM ratchet of one session.
pub(crate) struct KemRatchet {
    pub(crate) mode: CryptoMode,
    /// The epoch our messages use.
    pub(crate) send_epoch: u32,
    /// Epoch keys held, oldest first (at most [`EPOCH_WINDOW`]); boxed so that moving them
    /// never leaves a copy behind.
    pub(crate) keys: VecDeque<(u32, Box<SymmetricKey>)>,
    /// The highest epoch of a message accepted from the peer at a new position.
    pub(crate) peer_max_epoch: u32,
    pub(crate) pending: Pending,
    /// Messages sent and received since `send_epoch` last changed.
    pub(crate) since_refresh: u64,
}

impl core::fmt::Debug for KemRatchet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KemRatchet")
            .field("mode", &self.mode)
            .field("send_epoch", &self.send_epoch)
            .finish_non_exhaustive()
    }
}

/// What a verified incoming message does to the ratchet, computed before anything changes.
pub(crate) enum Update {
    /// Nothing (no chunk, or a stale one).
    None,
    /// Store a chunk of the item being collected.
    Chunk(u8, [u8; MAX_CHUNK]),
    /// Discard the encapsulation key being collected (it was invalid).
    Restart,
    /// The exchange completed on our side: install `pending` and maybe a key and a new epoch.
    Advance {
        key: Option<(u32, Box<SymmetricKey>)>,
        send_epoch: u32,
        pending: Pending,
    },
}

/// Whether the initiator sends the encapsulation key of `epoch`.
const fn initiator_sends_ek(epoch: u32) -> bool {
    epoch % 2 == 1
}

impl KemRatchet {
    /// The ratchet right after the handshake: both sides hold epoch 0; the initiator starts
    /// epoch 1 by sending a fresh encapsulation key.
    pub(crate) fn new(
        mode: CryptoMode,
        initiator: bool,
        epoch0: SymmetricKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let pending = if initiator {
            fresh_ek(mode, 1, rng)?
        } else {
            Pending::ReceivingEk {
                epoch: 1,
                ek: ChunkBuf::new(mode, ek_len(mode)),
            }
        };
        Ok(Self {
            mode,
            send_epoch: 0,
            keys: VecDeque::from([(0, Box::new(epoch0))]),
            peer_max_epoch: 0,
            pending,
            since_refresh: 0,
        })
    }

    /// The key of `epoch`, if held.
    pub(crate) fn key(&self, epoch: u32) -> Option<&SymmetricKey> {
        self.keys
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, k)| k.as_ref())
    }

    /// The epoch and the chunk (index, bytes zero-padded to the mode's chunk size) for the next
    /// outgoing message; advances the chunk carousel.
    pub(crate) fn outgoing(&mut self) -> (u32, Option<(u8, [u8; MAX_CHUNK])>) {
        self.since_refresh += 1;
        let size = chunk_len(self.mode);
        let (item, next): (&[u8], &mut u16) = match &mut self.pending {
            Pending::SendingEk { ek, next, .. } => (ek.as_slice(), next),
            Pending::Encapsulated { ct, next, .. } => (ct.as_slice(), next),
            Pending::ReceivingEk { .. } => return (self.send_epoch, None),
        };
        let count = item.len().div_ceil(size);
        let i = usize::from(*next) % count;
        *next = u16::try_from((i + 1) % count).unwrap_or(0);
        let part = &item[i * size..((i + 1) * size).min(item.len())];
        let mut out = [0u8; MAX_CHUNK];
        out[..part.len()].copy_from_slice(part);
        // At most 132 chunks per item (hybrid encapsulation key), so the index fits a byte.
        (self.send_epoch, Some((i as u8, out)))
    }

    /// Computes what a verified message of `epoch` carrying `chunk` changes.
    pub(crate) fn prepare(
        &self,
        epoch: u32,
        chunk: Option<Chunk<'_>>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Update> {
        // The peer sends with the epoch we encapsulated for: it holds it, so we move on and
        // start the next exchange as its encapsulation-key sender.
        if let Pending::Encapsulated { epoch: k, .. } = &self.pending
            && epoch >= *k
        {
            return Ok(Update::Advance {
                key: None,
                send_epoch: *k,
                pending: fresh_ek(self.mode, k + 1, rng)?,
            });
        }
        let Some(c) = chunk else {
            return Ok(Update::None);
        };
        let target = epoch.wrapping_add(1);
        match &self.pending {
            Pending::SendingEk {
                epoch: k, dk, ct, ..
            } if *k == target => {
                if ct.redundant(&c) {
                    return Ok(Update::None);
                }
                if !ct.completes_with(&c) {
                    return Ok(store(&c));
                }
                let mut buf = ct.clone();
                buf.put(&c);
                let ss = decapsulate(self.mode, dk, &buf.data[..ct_len(self.mode)])?;
                let key = chain::epoch_step(self.prev_key(*k)?, ss.expose(), *k)?;
                Ok(Update::Advance {
                    key: Some((*k, Box::new(key))),
                    send_epoch: *k,
                    pending: Pending::ReceivingEk {
                        epoch: k + 1,
                        ek: ChunkBuf::new(self.mode, ek_len(self.mode)),
                    },
                })
            }
            Pending::ReceivingEk { epoch: k, ek } if *k == target => {
                if ek.redundant(&c) {
                    return Ok(Update::None);
                }
                if !ek.completes_with(&c) {
                    return Ok(store(&c));
                }
                let mut buf = ek.clone();
                buf.put(&c);
                let Some((ct, ss)) = encapsulate(self.mode, &buf.data[..ek_len(self.mode)], rng)?
                else {
                    // An encapsulation key that fails the FIPS 203 check: the message itself
                    // authenticated and is delivered; the item is collected again from scratch.
                    return Ok(Update::Restart);
                };
                let key = chain::epoch_step(self.prev_key(*k)?, ss.expose(), *k)?;
                Ok(Update::Advance {
                    key: Some((*k, Box::new(key))),
                    send_epoch: self.send_epoch,
                    pending: Pending::Encapsulated {
                        epoch: *k,
                        ct,
                        next: 0,
                    },
                })
            }
            _ => Ok(Update::None),
        }
    }

    fn prev_key(&self, k: u32) -> Result<&SymmetricKey> {
        self.key(k.wrapping_sub(1))
            .ok_or(CryptoError::Internal("KEM ratchet: previous epoch key"))
    }

    /// Applies a prepared update (infallible). Returns the oldest epoch still held when the
    /// window moved, so skipped keys that can only use older epochs can be dropped.
    pub(crate) fn apply(&mut self, update: Update) -> Option<u32> {
        self.since_refresh += 1;
        match update {
            Update::None => None,
            Update::Restart => {
                if let Pending::ReceivingEk { ek, .. } = &mut self.pending {
                    *ek = ChunkBuf::new(self.mode, ek_len(self.mode));
                }
                None
            }
            Update::Chunk(index, data) => {
                let c = Chunk {
                    index,
                    data: &data[..chunk_len(self.mode)],
                };
                match &mut self.pending {
                    Pending::SendingEk { ct, .. } => ct.put(&c),
                    Pending::ReceivingEk { ek, .. } => ek.put(&c),
                    Pending::Encapsulated { .. } => {}
                }
                None
            }
            Update::Advance {
                key,
                send_epoch,
                pending,
            } => {
                if let Some(k) = key {
                    self.keys.push_back(k);
                }
                if send_epoch != self.send_epoch {
                    self.since_refresh = 0;
                }
                self.send_epoch = send_epoch;
                self.pending = pending;
                while self.keys.len() > EPOCH_WINDOW {
                    self.keys.pop_front();
                }
                self.keys.front().map(|(e, _)| *e)
            }
        }
    }
}

/// An update that stores `c` (no allocation: the chunk is copied into a fixed array).
fn store(c: &Chunk<'_>) -> Update {
    let mut data = [0u8; MAX_CHUNK];
    data[..c.data.len()].copy_from_slice(c.data);
    Update::Chunk(c.index, data)
}

/// A fresh encapsulation key for `epoch` (a ratchet key: zeroizing memory, no locked pages).
pub(crate) fn fresh_ek(
    mode: CryptoMode,
    epoch: u32,
    rng: &mut impl CryptoRngCore,
) -> Result<Pending> {
    let mut seed = Zeroizing::new([0u8; mlkem::SEED_LEN]);
    rng.try_fill_bytes(&mut seed[..])
        .map_err(|_| CryptoError::Rng)?;
    Ok(ek_from_seed(
        mode,
        epoch,
        seed,
        0,
        ChunkBuf::new(mode, ct_len(mode)),
    ))
}

/// Rebuilds the ek-sending state from its stored seed.
pub(crate) fn ek_from_seed(
    mode: CryptoMode,
    epoch: u32,
    seed: Zeroizing<[u8; mlkem::SEED_LEN]>,
    next: u16,
    ct: ChunkBuf,
) -> Pending {
    let (dk, ek) = match mode {
        CryptoMode::Quantum => {
            let (dk, pk) = MlKem1024KeyPair::generate_expanded(&seed);
            (dk, pk.as_bytes().to_vec())
        }
        _ => {
            let (dk, pk) = MlKem768KeyPair::generate_expanded(&seed);
            (dk, pk.as_bytes().to_vec())
        }
    };
    Pending::SendingEk {
        epoch,
        seed,
        dk,
        ek,
        next,
        ct,
    }
}

fn decapsulate(mode: CryptoMode, dk: &[u8], ct: &[u8]) -> Result<SymmetricKey> {
    match mode {
        CryptoMode::Quantum => MlKem1024KeyPair::decapsulate_with_expanded_key(dk, ct),
        _ => MlKem768KeyPair::decapsulate_with_expanded_key(dk, ct),
    }
}

/// Encapsulates to `ek`; `None` when `ek` fails the FIPS 203 §7.2 encapsulation-key check.
fn encapsulate(
    mode: CryptoMode,
    ek: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Option<(Vec<u8>, SymmetricKey)>> {
    let mut m = Zeroizing::new([0u8; mlkem::ENCAPS_RAND_LEN]);
    rng.try_fill_bytes(&mut m[..])
        .map_err(|_| CryptoError::Rng)?;
    Ok(match mode {
        CryptoMode::Quantum => MlKem1024PublicKey::from_bytes(ek).ok().map(|pk| {
            let (ct, ss) = pk.encapsulate_derand(&m);
            (ct.to_vec(), ss)
        }),
        _ => MlKem768PublicKey::from_bytes(ek).ok().map(|pk| {
            let (ct, ss) = pk.encapsulate_derand(&m);
            (ct.to_vec(), ss)
        }),
    })
}

/// Whether the initiator sends the encapsulation key of `epoch` (for the state decoder).
pub(crate) fn ek_sender_is_initiator(epoch: u32) -> bool {
    initiator_sends_ek(epoch)
}
