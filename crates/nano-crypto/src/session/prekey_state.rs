//! A responder's prekey secrets as bytes, for the client's encrypted store.
//!
//! ```text
//! secrets  = version (1) = 2 ‖ mode (1) ‖ count (1) ‖ signed* ‖ count (4) ‖ one-time*
//! signed   = [X25519 secret (32): classical, hybrid] ‖ [last-resort KEM seed: hybrid 32,
//!            quantum 64] ‖ id (4) ‖ count (2) ‖ seen session ids (32)*
//! one-time = KEM seed (classical 32, hybrid 32, quantum 64) ‖ id (4) ‖ signed id (4)
//! ```
//!
//! `signed id` names the signed-prekeys record the one-time prekey was added under; it must be
//! one of the records held.
//!
//! Integers are big-endian; signed records oldest first. Public keys are derived from the
//! secrets; records are signed again ([`super::SignedPrekeySecrets::certify`]) when uploaded.
//!
//! Version 1 (still read) kept each public record after its secret, `len (4) ‖ record`, in the
//! record formats of bundle version 1 (`mode ‖ id ‖ keys ‖ sig`); reading one takes the id and
//! refuses a record whose keys are not the ones derived from its secret, so a corrupted store
//! cannot pair a public prekey with another secret.

use std::collections::{BTreeMap, VecDeque};

use zeroize::Zeroizing;

use super::SessionError;
use super::one_time::{MAX_ONE_TIME_BATCH, OneTimePrekeys};
use super::prekey_secrets::{MAX_SEEN_HANDSHAKES, PrekeySecrets, SignedPrekeySecrets};
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::kem::{self, KemKeyPair};
use crate::mode::CryptoMode;
use crate::primitives::x25519::{self, X25519KeyPair};

/// Version byte of the prekey secrets encoding.
pub const PREKEY_SECRETS_VERSION: u8 = 2;
/// Most signed-prekeys records one encoding may hold (current and previous).
const MAX_SIGNED_RECORDS: usize = 16;
/// Most one-time prekeys one encoding may hold.
const MAX_ONE_TIME_HELD: u32 = 10 * MAX_ONE_TIME_BATCH;

type Result<T> = core::result::Result<T, SessionError>;

impl PrekeySecrets {
    /// The secrets as bytes (zeroized on drop). Store them encrypted, and write them after every
    /// `respond` that used a prekey, before acknowledging its message.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        // Sized first: a regrowth would free a copy of the secrets unwiped.
        let size = 7
            + self
                .signed
                .iter()
                .map(|s| 32 + 64 + 4 + 2 + 32 * s.seen.len())
                .sum::<usize>()
            + self.one_time.keys.len() * (64 + 8);
        out.reserve_exact(size);
        out.extend_from_slice(&[
            PREKEY_SECRETS_VERSION,
            self.mode.to_byte(),
            self.signed.len() as u8,
        ]);
        for s in &self.signed {
            if let Some(k) = &s.x25519 {
                out.extend_from_slice(k.secret_bytes());
            }
            if let Some(k) = &s.last_resort {
                out.extend_from_slice(k.seed());
            }
            out.extend_from_slice(&s.id.to_be_bytes());
            out.extend_from_slice(&(s.seen.len() as u16).to_be_bytes());
            for id in &s.seen {
                out.extend_from_slice(id);
            }
        }
        out.extend_from_slice(&(self.one_time.keys.len() as u32).to_be_bytes());
        // Every held one-time prekey has its record (`new`, `add_one_time`); were one missing,
        // the current record is named, as for version 1, never an id no record has (which
        // would make the whole encoding unreadable).
        let current = self.signed.last().map_or(0, |s| s.id);
        for (id, (kp, _)) in &self.one_time.keys {
            out.extend_from_slice(kp.seed());
            out.extend_from_slice(&id.to_be_bytes());
            let signed = self.certified_by.get(id).copied().unwrap_or(current);
            out.extend_from_slice(&signed.to_be_bytes());
        }
        out
    }

    /// Restores secrets from [`PrekeySecrets::to_bytes`] (version 2) or a version-1 encoding.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for another version, bad structure, counts past their
    /// bounds, or (version 1) a public record that does not match its secret;
    /// [`SessionError::ModeMismatch`] for a record of another mode.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("prekey secrets version")?;
        if version != PREKEY_SECRETS_VERSION && version != 1 {
            return Err(CryptoError::UnsupportedVersion {
                what: "prekey secrets",
                version,
            }
            .into());
        }
        let v1 = version == 1;
        let mode = CryptoMode::from_byte(r.u8("prekey secrets mode")?)?;
        let count = usize::from(r.u8("signed record count")?);
        if count == 0 || count > MAX_SIGNED_RECORDS {
            return Err(SessionError::malformed("signed record count"));
        }
        let mut signed = Vec::with_capacity(count);
        for _ in 0..count {
            signed.push(read_signed(&mut r, mode, v1)?);
        }
        let count = r.u32("one-time count")?;
        if count > MAX_ONE_TIME_HELD {
            return Err(SessionError::malformed("one-time count"));
        }
        let mut keys = BTreeMap::new();
        let mut certified_by = BTreeMap::new();
        // Version 1 kept no such link: its one-time prekeys count as the current record's.
        let current = signed.last().map_or(0, |s: &SignedPrekeySecrets| s.id);
        for _ in 0..count {
            let kp = KemKeyPair::from_seed(mode, r.take(kem::seed_len(mode), "one-time seed")?)?;
            let (id, signed_id) = if v1 {
                let public = kp.public_key();
                (v1_record_id(&mut r, mode, &[public.as_bytes()])?, current)
            } else {
                (r.u32("one-time id")?, r.u32("one-time signed id")?)
            };
            if !signed.iter().any(|s| s.id == signed_id) {
                return Err(SessionError::malformed(
                    "one-time prekey of a signed record not held",
                ));
            }
            certified_by.insert(id, signed_id);
            let (id, entry) = OneTimePrekeys::entry(mode, id, kp);
            if keys.insert(id, entry).is_some() {
                return Err(SessionError::malformed("duplicate one-time prekey id"));
            }
        }
        r.finish("prekey secrets")?;
        Ok(Self {
            mode,
            signed,
            one_time: OneTimePrekeys { mode, keys },
            certified_by,
        })
    }
}

fn read_signed(r: &mut Reader<'_>, mode: CryptoMode, v1: bool) -> Result<SignedPrekeySecrets> {
    let x25519 = if mode == CryptoMode::Quantum {
        None
    } else {
        let s = Zeroizing::new(r.array::<{ x25519::SECRET_KEY_LEN }>("signed prekey secret")?);
        Some(X25519KeyPair::from_secret(&s)?)
    };
    let last_resort = if mode == CryptoMode::Classical {
        None
    } else {
        Some(KemKeyPair::from_seed(
            mode,
            r.take(kem::seed_len(mode), "last-resort seed")?,
        )?)
    };
    let id = if v1 {
        let lr = last_resort.as_ref().map(KemKeyPair::public_key);
        let keys: Vec<&[u8]> = x25519
            .as_ref()
            .map(|k| &k.public_key()[..])
            .into_iter()
            .chain(lr.as_ref().map(|k| k.as_bytes()))
            .collect();
        v1_record_id(r, mode, &keys)?
    } else {
        r.u32("signed prekeys id")?
    };
    let seen_count = usize::from(r.u16("seen count")?);
    if seen_count > MAX_SEEN_HANDSHAKES {
        return Err(SessionError::malformed("seen count"));
    }
    let mut seen = VecDeque::with_capacity(seen_count);
    for _ in 0..seen_count {
        seen.push_back(r.array("seen session id")?);
    }
    Ok(SignedPrekeySecrets {
        mode,
        id,
        x25519,
        last_resort,
        seen,
    })
}

/// The id of a version-1 public record `len (4) ‖ mode ‖ id ‖ keys ‖ sig`, whose keys must be
/// `keys` (derived from the secrets just read); its signature is not needed any more.
fn v1_record_id(r: &mut Reader<'_>, mode: CryptoMode, keys: &[&[u8]]) -> Result<u32> {
    let len = r.u32("record length")? as usize;
    let mut rec = Reader::new(r.take(len, "record")?);
    crate::kem::expect_mode(mode, CryptoMode::from_byte(rec.u8("record mode")?)?)?;
    let id = rec.u32("record id")?;
    for k in keys {
        if rec.take(k.len(), "record key")? != *k {
            return Err(SessionError::malformed("record does not match its secret"));
        }
    }
    Ok(id)
}
