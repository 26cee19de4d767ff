//! The responder's side of prekeys: the secrets of its signed prekeys (current and, for a grace
//! period, previous) and of its unused one-time prekeys, and the signing of records.

use rand_core::CryptoRngCore;

use super::SessionError;
use super::one_time::{OneTimeBatch, OneTimePrekeys};
use super::prekey::{PrekeyBundle, SignedPrekeys, has_last_resort, has_x25519};
use crate::error::CryptoError;
use crate::identity::Identity;
use crate::kem::KemKeyPair;
use crate::mode::CryptoMode;
use crate::primitives::x25519::{self, X25519KeyPair};
use crate::sign::SigContext;

type Result<T> = core::result::Result<T, SessionError>;

/// Most session ids remembered per signed-prekeys record (handshakes that used no one-time
/// prekey); past it the oldest is forgotten, so rotate signed prekeys well before.
pub const MAX_SEEN_HANDSHAKES: usize = 10_000;

/// The secret side of one signed-prekeys record: its id and key pairs.
pub struct SignedPrekeySecrets {
    pub(super) mode: CryptoMode,
    pub(super) id: u32,
    pub(super) x25519: Option<X25519KeyPair>,
    pub(super) last_resort: Option<KemKeyPair>,
    /// Ids of the sessions accepted against this record without a one-time prekey, oldest
    /// first: each such handshake is accepted once.
    pub(super) seen: std::collections::VecDeque<[u8; 32]>,
}

impl core::fmt::Debug for SignedPrekeySecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedPrekeySecrets")
            .field("mode", &self.mode)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SignedPrekeySecrets {
    /// Makes the signed prekeys of `mode` with id `id`, drawing the X25519 secret (32;
    /// classical, hybrid), then the last-resort KEM seed (hybrid 32, quantum 64).
    ///
    /// # Errors
    /// RNG failures.
    pub fn generate(mode: CryptoMode, id: u32, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let x25519 = if has_x25519(mode) {
            let mut s = zeroize::Zeroizing::new([0u8; x25519::SECRET_KEY_LEN]);
            rng.try_fill_bytes(&mut s[..])
                .map_err(|_| CryptoError::Rng)?;
            Some(X25519KeyPair::from_secret(&s)?)
        } else {
            None
        };
        let last_resort = if has_last_resort(mode) {
            Some(KemKeyPair::generate(mode, rng)?)
        } else {
            None
        };
        Ok(Self {
            mode,
            id,
            x25519,
            last_resort,
            seen: std::collections::VecDeque::new(),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The id the handshake names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public record, signed by `identity`'s key of the mode over the public keys and the
    /// root of `one_time` (none: count 0, a zero root). Signing draws the mode's signature
    /// randomness (32 bytes in hybrid and quantum, none in classical).
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if `identity` has no keys of the mode or the batch is of
    /// another mode; RNG failures.
    pub fn certify(
        &self,
        identity: &Identity,
        one_time: Option<&OneTimeBatch>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<SignedPrekeys> {
        let signer = identity
            .signer(self.mode)
            .ok_or(SessionError::ModeMismatch {
                expected: identity.min_mode(),
                got: self.mode,
            })?;
        if let Some(b) = one_time
            && b.mode() != self.mode
        {
            return Err(SessionError::ModeMismatch {
                expected: self.mode,
                got: b.mode(),
            });
        }
        SignedPrekeys::sign(
            self.mode,
            self.id,
            self.x25519.as_ref().map(|k| *k.public_key()),
            self.last_resort.as_ref().map(KemKeyPair::public_key),
            one_time.map_or((0, [0; 32]), |b| (b.len(), *b.root())),
            |content| Ok(signer.sign(SigContext::SignedPrekeys, content, rng)?),
        )
    }

    pub(crate) fn x25519(&self) -> Option<&X25519KeyPair> {
        self.x25519.as_ref()
    }

    pub(crate) fn last_resort(&self) -> Option<&KemKeyPair> {
        self.last_resort.as_ref()
    }
}

/// Everything a responder needs for one mode: current and previous signed prekeys (kept for a
/// grace period after rotation, so handshakes made against them still complete) and the unused
/// one-time prekeys, each with the id of the signed-prekeys record that certifies its batch:
/// when that record is rotated out, a relay drops the batch, and its secrets go too.
#[derive(Debug)]
pub struct PrekeySecrets {
    pub(super) mode: CryptoMode,
    pub(super) signed: Vec<SignedPrekeySecrets>,
    pub(super) one_time: OneTimePrekeys,
    /// One-time prekey id → the id of the signed-prekeys record it was added under.
    pub(super) certified_by: std::collections::BTreeMap<u32, u32>,
}

impl PrekeySecrets {
    /// Secrets of `mode` starting with `signed` and `one_time`.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] when the parts are of different modes.
    pub fn new(signed: SignedPrekeySecrets, one_time: OneTimePrekeys) -> Result<Self> {
        let mode = signed.mode;
        if one_time.mode != mode {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: one_time.mode,
            });
        }
        let certified_by = one_time.keys.keys().map(|id| (*id, signed.id)).collect();
        Ok(Self {
            mode,
            signed: vec![signed],
            one_time,
            certified_by,
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The current signed prekeys.
    pub fn current(&self) -> Option<&SignedPrekeySecrets> {
        self.signed.last()
    }

    /// Makes `next` current, keeping at most `keep_previous` earlier records; the one-time
    /// secrets added under a record that is no longer kept are deleted with it.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if `next` is of another mode;
    /// [`SessionError::Malformed`] if a record with the same id is held.
    pub fn rotate(&mut self, next: SignedPrekeySecrets, keep_previous: usize) -> Result<()> {
        if next.mode != self.mode {
            return Err(SessionError::ModeMismatch {
                expected: self.mode,
                got: next.mode,
            });
        }
        if self.signed(next.id).is_some() {
            return Err(CryptoError::MalformedBundle("signed prekeys id already held").into());
        }
        self.signed.push(next);
        let excess = self.signed.len().saturating_sub(keep_previous + 1);
        self.signed.drain(..excess);
        let held: Vec<u32> = self.signed.iter().map(|s| s.id).collect();
        self.certified_by.retain(|_, signed| held.contains(signed));
        let certified = &self.certified_by;
        self.one_time
            .keys
            .retain(|id, _| certified.contains_key(id));
        Ok(())
    }

    /// A bundle as a relay would serve it from these secrets: the current signed prekeys,
    /// certified by `identity` over every one-time prekey held, and with `with_one_time` the
    /// first of them (none when none is held). For tests, benchmarks and tools; a relay builds
    /// bundles from uploads.
    ///
    /// # Errors
    /// As [`SignedPrekeySecrets::certify`]; [`SessionError::Malformed`] with no signed prekeys
    /// or more one-time prekeys than one batch holds.
    pub fn bundle(
        &self,
        identity: &Identity,
        with_one_time: bool,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PrekeyBundle> {
        let current = self
            .current()
            .ok_or_else(|| SessionError::malformed("no signed prekeys"))?;
        let batch = (!self.one_time.is_empty())
            .then(|| self.one_time.batch())
            .transpose()?;
        let record = current.certify(identity, batch.as_ref(), rng)?;
        let one_time = batch
            .filter(|_| with_one_time)
            .and_then(|b| b.inclusions().next());
        PrekeyBundle::new(record, one_time)
    }

    /// The one-time prekeys held.
    pub fn one_time(&self) -> &OneTimePrekeys {
        &self.one_time
    }

    /// Adds one-time prekeys under the current signed prekeys (the record that will certify
    /// them when uploaded); ids already held keep their secret.
    pub fn add_one_time(&mut self, batch: OneTimePrekeys) {
        if let Some(current) = self.signed.last().map(|s| s.id) {
            for id in batch.keys.keys() {
                self.certified_by.entry(*id).or_insert(current);
            }
        }
        self.one_time.merge(batch);
    }

    /// The signed-prekeys secrets numbered `id`, if held (the current one or one kept after a
    /// rotation).
    pub fn signed(&self, id: u32) -> Option<&SignedPrekeySecrets> {
        self.signed.iter().find(|s| s.id == id)
    }

    pub(crate) fn one_time_key(&self, id: u32) -> Option<&KemKeyPair> {
        self.one_time.get(id)
    }

    pub(crate) fn consume_one_time(&mut self, id: u32) {
        self.one_time.remove(id);
        self.certified_by.remove(&id);
    }

    /// Whether a session with `id` was already accepted against signed record `signed_id`.
    pub(crate) fn has_seen(&self, signed_id: u32, id: &[u8; 32]) -> bool {
        self.signed(signed_id)
            .is_some_and(|s| s.seen.iter().any(|x| x == id))
    }

    /// Remembers a session accepted against signed record `signed_id` without a one-time key.
    pub(crate) fn remember(&mut self, signed_id: u32, id: [u8; 32]) {
        if let Some(s) = self.signed.iter_mut().find(|s| s.id == signed_id) {
            if s.seen.len() >= MAX_SEEN_HANDSHAKES {
                s.seen.pop_front();
            }
            s.seen.push_back(id);
        }
    }
}
