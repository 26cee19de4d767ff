//! Prekeys: what a relay serves so that someone can start a session with an offline user.
//!
//! Per mode an identity publishes *signed prekeys* — an X25519 signed prekey (classical,
//! hybrid) and a last-resort KEM prekey (hybrid: X-Wing; quantum: ML-KEM-1024) under one id and
//! one signature — and batches of *one-time prekeys* (the mode's KEM: DHKEM-X25519, X-Wing,
//! ML-KEM-1024), each signed on its own so a relay can hand each out once.
//!
//! ```text
//! signed prekeys  = mode (1) ‖ id (4, BE) ‖ [x25519 (32)] ‖ [last-resort KEM key] ‖ sig
//! one-time prekey = mode (1) ‖ id (4, BE) ‖ KEM key ‖ sig
//! bundle          = version (1) = 1 ‖ mode (1) ‖ signed prekeys ‖ has one-time (1) ‖ [one-time]
//! ```
//!
//! Each `sig` is the owner's `mode` identity key over everything before it in its record, with
//! context `signed-prekeys` or `one-time-prekey` (`docs/PROTOCOL.md` §4.1).

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use super::SessionError;
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::identity::{Identity, PublicBundle};
use crate::kem::{self, KemKeyPair, KemPublicKey};
use crate::mode::CryptoMode;
use crate::primitives::x25519::{self, X25519KeyPair};
use crate::sign::{self, SigContext, Signature};

/// Version byte of the prekey bundle encoding.
pub const PREKEY_BUNDLE_VERSION: u8 = 1;
/// Most one-time prekeys one [`OneTimePrekeys::generate`] call makes.
pub const MAX_ONE_TIME_BATCH: u32 = 1_000;

type Result<T> = core::result::Result<T, SessionError>;

/// Whether signed prekeys of `mode` carry an X25519 signed prekey.
const fn has_x25519(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Quantum)
}

/// Whether signed prekeys of `mode` carry a last-resort KEM prekey.
const fn has_last_resort(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Classical)
}

/// A user's public signed prekeys for one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPrekeys {
    mode: CryptoMode,
    id: u32,
    x25519: Option<[u8; x25519::PUBLIC_KEY_LEN]>,
    last_resort: Option<KemPublicKey>,
    signature: Signature,
}

/// One public one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePrekey {
    mode: CryptoMode,
    id: u32,
    key: KemPublicKey,
    signature: Signature,
}

/// What a relay serves for one user and mode: the signed prekeys and at most one one-time
/// prekey. Decoding checks structure and key validity; [`PrekeyBundle::verify`] checks the
/// signatures against the owner's identity ([`super::Session::initiate`] always does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    signed: SignedPrekeys,
    one_time: Option<OneTimePrekey>,
}

impl SignedPrekeys {
    fn unsigned(&self) -> Vec<u8> {
        let mut out = vec![self.mode.to_byte()];
        out.extend_from_slice(&self.id.to_be_bytes());
        if let Some(x) = &self.x25519 {
            out.extend_from_slice(x);
        }
        if let Some(k) = &self.last_resort {
            out.extend_from_slice(k.as_bytes());
        }
        out
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The id the handshake names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The X25519 signed prekey (classical, hybrid).
    pub fn x25519(&self) -> Option<&[u8; x25519::PUBLIC_KEY_LEN]> {
        self.x25519.as_ref()
    }

    /// The last-resort KEM prekey (hybrid, quantum).
    pub fn last_resort(&self) -> Option<&KemPublicKey> {
        self.last_resort.as_ref()
    }

    /// The encoding (`mode ‖ id ‖ keys ‖ sig`).
    pub fn to_bytes(&self) -> Vec<u8> {
        signed_record(self.unsigned(), &self.signature)
    }

    /// Decodes a whole encoding.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] on bad structure or an invalid key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        whole(bytes, "signed prekeys", Self::read)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let mode = CryptoMode::from_byte(r.u8("prekey mode")?)?;
        let id = r.u32("prekey id")?;
        let x25519 = if has_x25519(mode) {
            let k = r.array::<{ x25519::PUBLIC_KEY_LEN }>("signed prekey")?;
            x25519::validate_public(&k)?;
            Some(k)
        } else {
            None
        };
        let last_resort = if has_last_resort(mode) {
            Some(KemPublicKey::from_bytes(
                mode,
                r.take(kem::public_key_len(mode), "last-resort prekey")?,
            )?)
        } else {
            None
        };
        let signature = Signature::from_bytes(
            mode,
            r.take(sign::signature_len(mode), "signed prekeys signature")?,
        )?;
        Ok(Self {
            mode,
            id,
            x25519,
            last_resort,
            signature,
        })
    }

    /// Checks the signature under `owner`'s identity key of this mode.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if the owner has no keys of this mode;
    /// [`SessionError::BadPrekeySignature`].
    pub fn verify(&self, owner: &PublicBundle) -> Result<()> {
        verify_record(
            owner,
            SigContext::SignedPrekeys,
            &self.unsigned(),
            &self.signature,
        )
    }
}

impl OneTimePrekey {
    fn unsigned(&self) -> Vec<u8> {
        let mut out = vec![self.mode.to_byte()];
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The id the handshake names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The KEM key.
    pub fn key(&self) -> &KemPublicKey {
        &self.key
    }

    /// The encoding (`mode ‖ id ‖ key ‖ sig`).
    pub fn to_bytes(&self) -> Vec<u8> {
        signed_record(self.unsigned(), &self.signature)
    }

    /// Decodes a whole encoding.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] on bad structure or an invalid key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        whole(bytes, "one-time prekey", Self::read)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let mode = CryptoMode::from_byte(r.u8("prekey mode")?)?;
        let id = r.u32("prekey id")?;
        let key =
            KemPublicKey::from_bytes(mode, r.take(kem::public_key_len(mode), "one-time prekey")?)?;
        let signature = Signature::from_bytes(
            mode,
            r.take(sign::signature_len(mode), "one-time prekey signature")?,
        )?;
        Ok(Self {
            mode,
            id,
            key,
            signature,
        })
    }

    /// Checks the signature under `owner`'s identity key of this mode.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if the owner has no keys of this mode;
    /// [`SessionError::BadPrekeySignature`].
    pub fn verify(&self, owner: &PublicBundle) -> Result<()> {
        verify_record(
            owner,
            SigContext::OneTimePrekey,
            &self.unsigned(),
            &self.signature,
        )
    }
}

impl PrekeyBundle {
    /// Assembles a bundle.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if the one-time prekey's mode differs.
    pub fn new(signed: SignedPrekeys, one_time: Option<OneTimePrekey>) -> Result<Self> {
        if let Some(o) = &one_time
            && o.mode != signed.mode
        {
            return Err(SessionError::ModeMismatch {
                expected: signed.mode,
                got: o.mode,
            });
        }
        Ok(Self { signed, one_time })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.signed.mode
    }

    /// The signed prekeys.
    pub fn signed(&self) -> &SignedPrekeys {
        &self.signed
    }

    /// The one-time prekey, if the relay had one left.
    pub fn one_time(&self) -> Option<&OneTimePrekey> {
        self.one_time.as_ref()
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![PREKEY_BUNDLE_VERSION, self.mode().to_byte()];
        out.extend_from_slice(&self.signed.to_bytes());
        match &self.one_time {
            Some(o) => {
                out.push(1);
                out.extend_from_slice(&o.to_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Decodes a bundle: structure, key validity, and one mode throughout.
    ///
    /// # Errors
    /// [`SessionError::Malformed`]; [`SessionError::ModeMismatch`] when parts disagree.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("prekey bundle version")?;
        if version != PREKEY_BUNDLE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "prekey bundle",
                version,
            }
            .into());
        }
        let mode = CryptoMode::from_byte(r.u8("prekey bundle mode")?)?;
        let signed = SignedPrekeys::read(&mut r)?;
        let one_time = match r.u8("one-time prekey flag")? {
            0 => None,
            1 => Some(OneTimePrekey::read(&mut r)?),
            _ => return Err(CryptoError::MalformedBundle("one-time prekey flag").into()),
        };
        r.finish("prekey bundle")?;
        if signed.mode != mode {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: signed.mode,
            });
        }
        Self::new(signed, one_time)
    }

    /// Checks every signature under `owner`'s identity.
    ///
    /// # Errors
    /// As [`SignedPrekeys::verify`].
    pub fn verify(&self, owner: &PublicBundle) -> Result<()> {
        self.signed.verify(owner)?;
        if let Some(o) = &self.one_time {
            o.verify(owner)?;
        }
        Ok(())
    }
}

/// Most session ids remembered per signed-prekeys record (handshakes that used no one-time
/// prekey); past it the oldest is forgotten, so rotate signed prekeys well before.
pub const MAX_SEEN_HANDSHAKES: usize = 10_000;

/// The secret side of one signed-prekeys record.
pub struct SignedPrekeySecrets {
    pub(super) x25519: Option<X25519KeyPair>,
    pub(super) last_resort: Option<KemKeyPair>,
    pub(super) public: SignedPrekeys,
    /// Ids of the sessions accepted against this record without a one-time prekey, oldest
    /// first: each such handshake is accepted once.
    pub(super) seen: std::collections::VecDeque<[u8; 32]>,
}

impl core::fmt::Debug for SignedPrekeySecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedPrekeySecrets")
            .field("mode", &self.public.mode)
            .field("id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SignedPrekeySecrets {
    /// Makes and signs the signed prekeys of `mode` with id `id`.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if `identity` has no keys of `mode`; RNG failures.
    pub fn generate(
        identity: &Identity,
        mode: CryptoMode,
        id: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let signer = signer(identity, mode)?;
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
        let mut public = SignedPrekeys {
            mode,
            id,
            x25519: x25519.as_ref().map(|k| *k.public_key()),
            last_resort: last_resort.as_ref().map(KemKeyPair::public_key),
            signature: unsigned_placeholder(mode)?,
        };
        public.signature = signer.sign(SigContext::SignedPrekeys, &public.unsigned(), rng)?;
        Ok(Self {
            x25519,
            last_resort,
            public,
            seen: std::collections::VecDeque::new(),
        })
    }

    /// The public record to upload.
    pub fn public(&self) -> &SignedPrekeys {
        &self.public
    }

    pub(crate) fn x25519(&self) -> Option<&X25519KeyPair> {
        self.x25519.as_ref()
    }

    pub(crate) fn last_resort(&self) -> Option<&KemKeyPair> {
        self.last_resort.as_ref()
    }
}

/// A batch of one-time prekeys: the secrets this side keeps, and their signed public halves.
pub struct OneTimePrekeys {
    pub(super) mode: CryptoMode,
    pub(super) keys: BTreeMap<u32, (KemKeyPair, OneTimePrekey)>,
}

impl core::fmt::Debug for OneTimePrekeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneTimePrekeys")
            .field("mode", &self.mode)
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl OneTimePrekeys {
    /// An empty set.
    pub fn empty(mode: CryptoMode) -> Self {
        Self {
            mode,
            keys: BTreeMap::new(),
        }
    }

    /// Makes and signs `count` one-time prekeys with ids `first_id..first_id + count`.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if `identity` has no keys of `mode`;
    /// [`SessionError::Malformed`] for `count` over [`MAX_ONE_TIME_BATCH`] or ids past `u32`.
    pub fn generate(
        identity: &Identity,
        mode: CryptoMode,
        first_id: u32,
        count: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let signer = signer(identity, mode)?;
        if count > MAX_ONE_TIME_BATCH || first_id.checked_add(count).is_none() {
            return Err(CryptoError::TooLarge {
                what: "one-time prekey batch",
                max: MAX_ONE_TIME_BATCH as usize,
                got: count as usize,
            }
            .into());
        }
        let mut keys = BTreeMap::new();
        for id in first_id..first_id + count {
            let kp = KemKeyPair::generate(mode, rng)?;
            let mut public = OneTimePrekey {
                mode,
                id,
                key: kp.public_key(),
                signature: unsigned_placeholder(mode)?,
            };
            public.signature = signer.sign(SigContext::OneTimePrekey, &public.unsigned(), rng)?;
            keys.insert(id, (kp, public));
        }
        Ok(Self { mode, keys })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The public halves, in id order (what to upload).
    pub fn publics(&self) -> impl Iterator<Item = &OneTimePrekey> {
        self.keys.values().map(|(_, p)| p)
    }

    /// How many secrets are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds another batch of the same mode (ids already held are kept as they are).
    pub fn merge(&mut self, other: OneTimePrekeys) {
        for (id, v) in other.keys {
            self.keys.entry(id).or_insert(v);
        }
    }

    pub(crate) fn get(&self, id: u32) -> Option<&KemKeyPair> {
        self.keys.get(&id).map(|(k, _)| k)
    }

    /// Deletes a used secret.
    pub(crate) fn remove(&mut self, id: u32) {
        self.keys.remove(&id);
    }
}

/// Everything a responder needs for one mode: current and previous signed prekeys (kept for a
/// grace period after rotation, so handshakes made against them still complete) and the unused
/// one-time prekeys.
#[derive(Debug)]
pub struct PrekeySecrets {
    pub(super) mode: CryptoMode,
    pub(super) signed: Vec<SignedPrekeySecrets>,
    pub(super) one_time: OneTimePrekeys,
}

impl PrekeySecrets {
    /// Secrets of `mode` starting with `signed` and `one_time`.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] when the parts are of different modes.
    pub fn new(signed: SignedPrekeySecrets, one_time: OneTimePrekeys) -> Result<Self> {
        let mode = signed.public.mode;
        if one_time.mode != mode {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: one_time.mode,
            });
        }
        Ok(Self {
            mode,
            signed: vec![signed],
            one_time,
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

    /// Makes `next` current, keeping at most `keep_previous` earlier records.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if `next` is of another mode;
    /// [`SessionError::Malformed`] if a record with the same id is held.
    pub fn rotate(&mut self, next: SignedPrekeySecrets, keep_previous: usize) -> Result<()> {
        if next.public.mode != self.mode {
            return Err(SessionError::ModeMismatch {
                expected: self.mode,
                got: next.public.mode,
            });
        }
        if self.signed(next.public.id).is_some() {
            return Err(CryptoError::MalformedBundle("signed prekeys id already held").into());
        }
        self.signed.push(next);
        let excess = self.signed.len().saturating_sub(keep_previous + 1);
        self.signed.drain(..excess);
        Ok(())
    }

    /// The one-time prekeys held.
    pub fn one_time(&self) -> &OneTimePrekeys {
        &self.one_time
    }

    /// Adds a new batch of one-time prekeys.
    pub fn add_one_time(&mut self, batch: OneTimePrekeys) {
        self.one_time.merge(batch);
    }

    /// The signed-prekeys secrets numbered `id`, if held (the current one or one kept after a
    /// rotation).
    pub fn signed(&self, id: u32) -> Option<&SignedPrekeySecrets> {
        self.signed.iter().find(|s| s.public.id == id)
    }

    pub(crate) fn one_time_key(&self, id: u32) -> Option<&KemKeyPair> {
        self.one_time.get(id)
    }

    pub(crate) fn consume_one_time(&mut self, id: u32) {
        self.one_time.remove(id);
    }

    /// Whether a session with `id` was already accepted against signed record `signed_id`.
    pub(crate) fn has_seen(&self, signed_id: u32, id: &[u8; 32]) -> bool {
        self.signed(signed_id)
            .is_some_and(|s| s.seen.iter().any(|x| x == id))
    }

    /// Remembers a session accepted against signed record `signed_id` without a one-time key.
    pub(crate) fn remember(&mut self, signed_id: u32, id: [u8; 32]) {
        if let Some(s) = self.signed.iter_mut().find(|s| s.public.id == signed_id) {
            if s.seen.len() >= MAX_SEEN_HANDSHAKES {
                s.seen.pop_front();
            }
            s.seen.push_back(id);
        }
    }
}

/// A record's bytes: its unsigned part, then its signature.
fn signed_record(mut unsigned: Vec<u8>, signature: &Signature) -> Vec<u8> {
    unsigned.extend_from_slice(signature.as_bytes());
    unsigned
}

/// Decodes a value that must span all of `bytes`.
fn whole<T>(
    bytes: &[u8],
    what: &'static str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T>,
) -> Result<T> {
    let mut r = Reader::new(bytes);
    let v = read(&mut r)?;
    r.finish(what)?;
    Ok(v)
}

/// Verifies a prekey record's signature under `owner`'s identity key of the signature's mode.
fn verify_record(
    owner: &PublicBundle,
    ctx: SigContext,
    unsigned: &[u8],
    signature: &Signature,
) -> Result<()> {
    let mode = signature.mode();
    let vk = owner
        .verifying_key(mode)
        .ok_or(SessionError::ModeMismatch {
            expected: owner.min_mode(),
            got: mode,
        })?;
    vk.verify(ctx, unsigned, signature)
        .map_err(|_| SessionError::BadPrekeySignature)
}

/// A placeholder signature of the right size, replaced once the record is signed.
fn unsigned_placeholder(mode: CryptoMode) -> Result<Signature> {
    Ok(Signature::from_bytes(
        mode,
        &vec![0; sign::signature_len(mode)],
    )?)
}

fn signer(identity: &Identity, mode: CryptoMode) -> Result<&crate::sign::SigningKeyPair> {
    identity.signer(mode).ok_or(SessionError::ModeMismatch {
        expected: identity.min_mode(),
        got: mode,
    })
}
