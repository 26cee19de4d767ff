//! A responder's prekey secrets as bytes, for the client's encrypted store.
//!
//! ```text
//! secrets  = version (1) = 1 ‖ mode (1) ‖ count (1) ‖ signed* ‖ count (4) ‖ one-time*
//! signed   = [X25519 secret (32): classical, hybrid] ‖ [last-resort KEM seed: hybrid 32,
//!            quantum 64] ‖ len (4) ‖ signed prekeys record ‖ count (2) ‖ seen session ids (32)*
//! one-time = KEM seed (classical 32, hybrid 32, quantum 64) ‖ len (4) ‖ one-time prekey record
//! ```
//!
//! Integers are big-endian; signed records oldest first. Decoding re-derives every key pair from
//! its secret and refuses a record whose public keys are not the derived ones, so a corrupted
//! store cannot pair a public prekey with another secret.

use std::collections::{BTreeMap, VecDeque};

use zeroize::Zeroizing;

use super::SessionError;
use super::prekey::{
    MAX_ONE_TIME_BATCH, MAX_SEEN_HANDSHAKES, OneTimePrekey, OneTimePrekeys, PrekeySecrets,
    SignedPrekeySecrets, SignedPrekeys,
};
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::kem::{self, KemKeyPair};
use crate::mode::CryptoMode;
use crate::primitives::x25519::{self, X25519KeyPair};

/// Version byte of the prekey secrets encoding.
pub const PREKEY_SECRETS_VERSION: u8 = 1;
/// Most signed-prekeys records one encoding may hold (current and previous).
const MAX_SIGNED_RECORDS: usize = 16;
/// Most one-time prekeys one encoding may hold.
const MAX_ONE_TIME_HELD: u32 = 10 * MAX_ONE_TIME_BATCH;

type Result<T> = core::result::Result<T, SessionError>;

fn put_record(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn get_record<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8]> {
    let len = r.u32(what)? as usize;
    Ok(r.take(len, what)?)
}

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
                .map(|s| 32 + 64 + 4 + s.public.to_bytes().len() + 2 + 32 * s.seen.len())
                .sum::<usize>()
            + self
                .one_time
                .keys
                .values()
                .map(|(_, p)| 64 + 4 + p.to_bytes().len())
                .sum::<usize>();
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
            put_record(&mut out, &s.public.to_bytes());
            out.extend_from_slice(&(s.seen.len() as u16).to_be_bytes());
            for id in &s.seen {
                out.extend_from_slice(id);
            }
        }
        out.extend_from_slice(&(self.one_time.keys.len() as u32).to_be_bytes());
        for (kp, public) in self.one_time.keys.values() {
            out.extend_from_slice(kp.seed());
            put_record(&mut out, &public.to_bytes());
        }
        out
    }

    /// Restores secrets from [`PrekeySecrets::to_bytes`].
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for another version, bad structure, counts past their
    /// bounds, or a public record that does not match its secret;
    /// [`SessionError::ModeMismatch`] for a record of another mode.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("prekey secrets version")?;
        if version != PREKEY_SECRETS_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "prekey secrets",
                version,
            }
            .into());
        }
        let mode = CryptoMode::from_byte(r.u8("prekey secrets mode")?)?;
        let count = usize::from(r.u8("signed record count")?);
        if count == 0 || count > MAX_SIGNED_RECORDS {
            return Err(SessionError::malformed("signed record count"));
        }
        let mut signed = Vec::with_capacity(count);
        for _ in 0..count {
            signed.push(read_signed(&mut r, mode)?);
        }
        let count = r.u32("one-time count")?;
        if count > MAX_ONE_TIME_HELD {
            return Err(SessionError::malformed("one-time count"));
        }
        let mut keys = BTreeMap::new();
        for _ in 0..count {
            let kp = KemKeyPair::from_seed(mode, r.take(kem::seed_len(mode), "one-time seed")?)?;
            let public = OneTimePrekey::from_bytes(get_record(&mut r, "one-time record")?)?;
            crate::kem::expect_mode(mode, public.mode())?;
            if &kp.public_key() != public.key() {
                return Err(SessionError::malformed(
                    "one-time record does not match its secret",
                ));
            }
            if keys.insert(public.id(), (kp, public)).is_some() {
                return Err(SessionError::malformed("duplicate one-time prekey id"));
            }
        }
        r.finish("prekey secrets")?;
        Ok(Self {
            mode,
            signed,
            one_time: OneTimePrekeys { mode, keys },
        })
    }
}

fn read_signed(r: &mut Reader<'_>, mode: CryptoMode) -> Result<SignedPrekeySecrets> {
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
    let public = SignedPrekeys::from_bytes(get_record(r, "signed record")?)?;
    crate::kem::expect_mode(mode, public.mode())?;
    let matches = x25519.as_ref().map(|k| k.public_key()) == public.x25519()
        && last_resort.as_ref().map(KemKeyPair::public_key).as_ref() == public.last_resort();
    if !matches {
        return Err(SessionError::malformed(
            "signed record does not match its secrets",
        ));
    }
    let seen_count = usize::from(r.u16("seen count")?);
    if seen_count > MAX_SEEN_HANDSHAKES {
        return Err(SessionError::malformed("seen count"));
    }
    let mut seen = VecDeque::with_capacity(seen_count);
    for _ in 0..seen_count {
        seen.push_back(r.array("seen session id")?);
    }
    Ok(SignedPrekeySecrets {
        x25519,
        last_resort,
        public,
        seen,
    })
}
