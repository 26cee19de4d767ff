//! A session's state as bytes, for the client's encrypted store.
//!
//! ```text
//! state   = version (1) = 1 ‖ mode (1) ‖ aead (1) ‖ initiator (1) ‖ id (32) ‖ local (32)
//!           ‖ remote (32) ‖ chain? send ‖ chain? recv ‖ [dh: classical, hybrid]
//!           ‖ [kem: hybrid, quantum] ‖ skipped
//! chain?  = 0 | 1 ‖ chain key (32) ‖ n (4)
//! dh      = root (32) ‖ 0 | 1 ‖ our ratchet secret (32) ‖ 0 | 1 ‖ peer ratchet key (32)
//!           ‖ pn (4) ‖ count (1) ‖ old peer ratchet keys (32 each)
//! kem     = send epoch (4) ‖ since refresh (8) ‖ peer max epoch (4) ‖ count (1)
//!           ‖ { epoch (4) ‖ key (32) }
//!           ‖ pending: 1 ‖ epoch (4) ‖ seed (64) ‖ next (2) ‖ chunks   (sending the ek)
//!                    | 2 ‖ epoch (4) ‖ chunks                          (collecting the ek)
//!                    | 3 ‖ epoch (4) ‖ ciphertext ‖ next (2)           (sending the ciphertext)
//! chunks  = bitmap (⌈count / 8⌉, bit i of byte i/8 = chunk i held, LSB first) ‖ data
//! skipped = count (2) ‖ { chain id (32) ‖ n (4) ‖ max epoch (4) ‖ key (32) }
//! ```
//! Integers are big-endian. Every count is bounded on decode, so a corrupted store cannot make
//! the decoder allocate without limit.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use super::chain::{self, Chain};
use super::kem_ratchet::{
    ChunkBuf, EPOCH_WINDOW, KemRatchet, Pending, chunks, ct_len, ek_from_seed, ek_len,
    ek_sender_is_initiator,
};
use super::message::{chunk_len, has_dh, has_kem};
use super::ratchet::{DhState, OLD_RATCHET_KEYS};
use super::skipped::{MAX_SKIPPED, SkippedKey, SkippedKeys};
use super::{Session, SessionError};
use crate::aead::AeadId;
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::identity::Fingerprint;
use crate::mode::CryptoMode;
use crate::primitives::x25519::EphemeralX25519;
use crate::secret::SymmetricKey;

/// Version byte of the session state encoding.
pub const SESSION_STATE_VERSION: u8 = 1;

type Result<T> = core::result::Result<T, SessionError>;

/// An upper bound on the state's length without skipped keys: header 100, chains 74, DH part
/// 32 + 33 + 33 + 4 + 1 + 16 × 32, KEM part 4 + 8 + 4 + 1 + 16 × 36 + 1 + 4 + 64 + 2 + 5 +
/// 1,596 (the largest pending exchange), skipped count 2.
const FIXED_STATE_MAX: usize = 100 + 74 + 615 + 2_269 + 2;
/// Bytes per skipped key: chain id, n, max epoch, key.
const SKIPPED_ENTRY_LEN: usize = 32 + 4 + 4 + 32;

fn put_chain(out: &mut Vec<u8>, c: Option<&Chain>) {
    match c {
        Some(c) => {
            out.push(1);
            out.extend_from_slice(c.key.expose());
            out.extend_from_slice(&c.n.to_be_bytes());
        }
        None => out.push(0),
    }
}

fn get_chain(r: &mut Reader<'_>) -> Result<Option<Chain>> {
    Ok(match r.u8("chain flag")? {
        0 => None,
        1 => Some(Chain {
            key: key(r, "chain key")?,
            n: r.u32("chain index")?,
        }),
        _ => return Err(SessionError::malformed("chain flag")),
    })
}

fn key(r: &mut Reader<'_>, what: &'static str) -> Result<SymmetricKey> {
    Ok(chain::key32(r.take(32, what)?))
}

fn put_chunks(out: &mut Vec<u8>, b: &ChunkBuf) {
    let mut bitmap = vec![0u8; b.have.len().div_ceil(8)];
    for (i, h) in b.have.iter().enumerate() {
        if *h {
            bitmap[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&bitmap);
    out.extend_from_slice(&b.data);
}

fn get_chunks(r: &mut Reader<'_>, mode: CryptoMode, len: usize) -> Result<ChunkBuf> {
    let mut b = ChunkBuf::new(mode, len);
    let bitmap = r.take(b.have.len().div_ceil(8), "chunk bitmap")?;
    for (i, h) in b.have.iter_mut().enumerate() {
        *h = bitmap[i / 8] & (1 << (i % 8)) != 0;
    }
    let data = r.take(chunks(mode, len) * chunk_len(mode), "chunk data")?;
    b.data.copy_from_slice(data);
    Ok(b)
}

impl Session {
    /// The state as bytes (zeroized on drop): store them encrypted, and write them before a
    /// message leaves and before a received one is acknowledged.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Allocated once at its final size: a regrowth would free a copy of the secrets unwiped.
        let mut out = Zeroizing::new(Vec::with_capacity(
            FIXED_STATE_MAX + SKIPPED_ENTRY_LEN * self.skipped.entries.len(),
        ));
        out.extend_from_slice(&[
            SESSION_STATE_VERSION,
            self.mode.to_byte(),
            self.aead.to_byte(),
            u8::from(self.initiator),
        ]);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.local.0);
        out.extend_from_slice(&self.remote.0);
        put_chain(&mut out, self.send.as_ref());
        put_chain(&mut out, self.recv.as_ref());
        if let Some(dh) = &self.dh {
            out.extend_from_slice(dh.root.expose());
            match &dh.dhs {
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(k.secret_bytes());
                }
                None => out.push(0),
            }
            match &dh.dhr {
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(k);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&dh.pn.to_be_bytes());
            out.push(dh.old_dhr.len() as u8);
            for k in &dh.old_dhr {
                out.extend_from_slice(k);
            }
        }
        if let Some(kem) = &self.kem {
            out.extend_from_slice(&kem.send_epoch.to_be_bytes());
            out.extend_from_slice(&kem.since_refresh.to_be_bytes());
            out.extend_from_slice(&kem.peer_max_epoch.to_be_bytes());
            out.push(kem.keys.len() as u8);
            for (e, k) in &kem.keys {
                out.extend_from_slice(&e.to_be_bytes());
                out.extend_from_slice(k.expose());
            }
            match &kem.pending {
                Pending::SendingEk {
                    epoch,
                    seed,
                    next,
                    ct,
                    ..
                } => {
                    out.push(1);
                    out.extend_from_slice(&epoch.to_be_bytes());
                    out.extend_from_slice(&seed[..]);
                    out.extend_from_slice(&next.to_be_bytes());
                    put_chunks(&mut out, ct);
                }
                Pending::ReceivingEk { epoch, ek } => {
                    out.push(2);
                    out.extend_from_slice(&epoch.to_be_bytes());
                    put_chunks(&mut out, ek);
                }
                Pending::Encapsulated { epoch, ct, next } => {
                    out.push(3);
                    out.extend_from_slice(&epoch.to_be_bytes());
                    out.extend_from_slice(ct);
                    out.extend_from_slice(&next.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.skipped.entries.len() as u16).to_be_bytes());
        for s in &self.skipped.entries {
            out.extend_from_slice(&s.chain);
            out.extend_from_slice(&s.n.to_be_bytes());
            out.extend_from_slice(&s.max_epoch.to_be_bytes());
            out.extend_from_slice(s.key.expose());
        }
        out
    }

    /// Restores a session from [`Session::to_bytes`].
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for an unknown version, a truncated or over-long encoding,
    /// or counts past their bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("session state version")?;
        if version != SESSION_STATE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "session state",
                version,
            }
            .into());
        }
        let mode = CryptoMode::from_byte(r.u8("session mode")?)?;
        let aead = AeadId::from_byte(r.u8("session aead")?)?;
        let initiator = match r.u8("initiator flag")? {
            0 => false,
            1 => true,
            _ => return Err(SessionError::malformed("initiator flag")),
        };
        let id = r.array("session id")?;
        let local = Fingerprint(r.array("local fingerprint")?);
        let remote = Fingerprint(r.array("remote fingerprint")?);
        let send = get_chain(&mut r)?;
        let recv = get_chain(&mut r)?;
        let dh = if has_dh(mode) {
            Some(read_dh(&mut r)?)
        } else {
            None
        };
        let kem = if has_kem(mode) {
            Some(read_kem(&mut r, mode, initiator)?)
        } else {
            None
        };
        let count = usize::from(r.u16("skipped count")?);
        if count > MAX_SKIPPED {
            return Err(SessionError::malformed("skipped count"));
        }
        let mut skipped = SkippedKeys::default();
        for _ in 0..count {
            skipped.entries.push_back(SkippedKey {
                chain: r.array("skipped chain")?,
                n: r.u32("skipped index")?,
                max_epoch: r.u32("skipped max epoch")?,
                key: Box::new(key(&mut r, "skipped key")?),
            });
        }
        r.finish("session state")?;
        if dh.is_none() && (send.is_none() || recv.is_none()) {
            return Err(SessionError::malformed("quantum session chains"));
        }
        Ok(Self {
            mode,
            aead,
            id,
            initiator,
            local,
            remote,
            send,
            recv,
            dh,
            kem,
            skipped,
        })
    }
}

fn read_dh(r: &mut Reader<'_>) -> Result<DhState> {
    let root = key(r, "root key")?;
    let dhs = match r.u8("ratchet secret flag")? {
        0 => None,
        1 => {
            let s = Zeroizing::new(r.array::<32>("ratchet secret")?);
            Some(EphemeralX25519::from_secret(&s)?)
        }
        _ => return Err(SessionError::malformed("ratchet secret flag")),
    };
    let dhr = match r.u8("peer ratchet flag")? {
        0 => None,
        1 => Some(r.array("peer ratchet key")?),
        _ => return Err(SessionError::malformed("peer ratchet flag")),
    };
    let pn = r.u32("pn")?;
    let count = usize::from(r.u8("old ratchet count")?);
    if count > OLD_RATCHET_KEYS {
        return Err(SessionError::malformed("old ratchet count"));
    }
    let mut old_dhr = VecDeque::with_capacity(count);
    for _ in 0..count {
        old_dhr.push_back(r.array("old ratchet key")?);
    }
    Ok(DhState {
        root,
        dhs,
        dhr,
        old_dhr,
        pn,
    })
}

fn read_kem(r: &mut Reader<'_>, mode: CryptoMode, initiator: bool) -> Result<KemRatchet> {
    let send_epoch = r.u32("send epoch")?;
    let since_refresh = r.u64("since refresh")?;
    let peer_max_epoch = r.u32("peer max epoch")?;
    let count = usize::from(r.u8("epoch key count")?);
    if count == 0 || count > EPOCH_WINDOW {
        return Err(SessionError::malformed("epoch key count"));
    }
    let mut keys = VecDeque::with_capacity(count);
    for _ in 0..count {
        keys.push_back((r.u32("epoch")?, Box::new(key(r, "epoch key")?)));
    }
    let pending = match r.u8("pending kind")? {
        1 => {
            let epoch = r.u32("pending epoch")?;
            let seed = Zeroizing::new(r.array::<64>("ratchet seed")?);
            let next = r.u16("chunk cursor")?;
            let ct = get_chunks(r, mode, ct_len(mode))?;
            ek_from_seed(mode, epoch, seed, next, ct)
        }
        2 => Pending::ReceivingEk {
            epoch: r.u32("pending epoch")?,
            ek: get_chunks(r, mode, ek_len(mode))?,
        },
        3 => {
            let epoch = r.u32("pending epoch")?;
            let ct = r.take(ct_len(mode), "ratchet ciphertext")?.to_vec();
            Pending::Encapsulated {
                epoch,
                ct,
                next: r.u16("chunk cursor")?,
            }
        }
        _ => return Err(SessionError::malformed("pending kind")),
    };
    let (epoch, sends_ek) = match &pending {
        Pending::SendingEk { epoch, .. } => (*epoch, true),
        Pending::ReceivingEk { epoch, .. } | Pending::Encapsulated { epoch, .. } => (*epoch, false),
    };
    if ek_sender_is_initiator(epoch) != (sends_ek == initiator) {
        return Err(SessionError::malformed("pending exchange role"));
    }
    let k = KemRatchet {
        mode,
        send_epoch,
        keys,
        pending,
        since_refresh,
        peer_max_epoch,
    };
    if k.key(send_epoch).is_none() {
        return Err(SessionError::malformed("send epoch key"));
    }
    Ok(k)
}
