//! Prekeys: what a relay serves so that someone can start a session with an offline user.
//!
//! Per mode an identity publishes *signed prekeys* — an X25519 signed prekey (classical,
//! hybrid) and a last-resort KEM prekey (hybrid: X-Wing; quantum: ML-KEM-1024) under one id and
//! one signature, which also covers the Merkle root of a batch of *one-time prekeys*
//! (`one_time`), so that a relay can hand each of those out once with an inclusion proof.
//!
//! ```text
//! signed prekeys = mode (1) ‖ id (4, BE) ‖ [x25519 (32)] ‖ [last-resort KEM key]
//!                  ‖ one-time count (2, BE) ‖ one-time root (32) ‖ sig
//! compact form   = the same with SHA-256(last-resort KEM key) (32) in place of the key
//! content signed = mode ‖ id ‖ [x25519] ‖ [SHA-256(last-resort KEM key)] ‖ count ‖ root
//! bundle         = version (1) = 2 ‖ mode (1) ‖ 0x00 ‖ signed prekeys
//!                | version (1) = 2 ‖ mode (1) ‖ 0x01 ‖ compact signed prekeys ‖ inclusion
//! ```
//!
//! `sig` is the owner's `mode` identity key over the content, with context `signed-prekeys`
//! (`docs/PROTOCOL.md` §4.1, §14.2). A count of 0 has a root of 32 zero bytes. A bundle with a
//! one-time prekey carries the last-resort key's digest only: the handshake uses the one-time
//! prekey then, and the digest keeps the signature checkable.

use sha2::{Digest, Sha256};

use super::SessionError;
use super::one_time::{MAX_ONE_TIME_BATCH, OneTimeBatch, OneTimeInclusion, OneTimePrekey};
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::identity::PublicBundle;
use crate::kem::{self, KemPublicKey};
use crate::mode::CryptoMode;
use crate::primitives::x25519;
use crate::sign::{self, SigContext, Signature};

/// Version byte of the prekey bundle encoding.
pub const PREKEY_BUNDLE_VERSION: u8 = 2;

type Result<T> = core::result::Result<T, SessionError>;

/// Whether signed prekeys of `mode` carry an X25519 signed prekey.
pub(super) const fn has_x25519(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Quantum)
}

/// Whether signed prekeys of `mode` carry a last-resort KEM prekey.
pub(super) const fn has_last_resort(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Classical)
}

/// The last-resort KEM prekey as a record carries it: whole, or (in a bundle that serves a
/// one-time prekey) its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LastResort {
    /// Boxed: a KEM key is up to 1,568 bytes, the digest 32.
    Key(Box<KemPublicKey>),
    Digest([u8; 32]),
}

impl LastResort {
    fn digest(&self) -> [u8; 32] {
        match self {
            Self::Key(k) => Sha256::digest(k.as_bytes()).into(),
            Self::Digest(d) => *d,
        }
    }
}

/// A user's public signed prekeys for one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPrekeys {
    mode: CryptoMode,
    id: u32,
    x25519: Option<[u8; x25519::PUBLIC_KEY_LEN]>,
    last_resort: Option<LastResort>,
    one_time_count: u16,
    one_time_root: [u8; 32],
    signature: Signature,
}

/// What a relay serves for one user and mode: the signed prekeys and at most one one-time
/// prekey with its inclusion proof. Decoding checks structure and key validity;
/// [`PrekeyBundle::verify`] checks the signature and the proof against the owner's identity
/// ([`super::Session::initiate`] always does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    signed: SignedPrekeys,
    one_time: Option<OneTimeInclusion>,
}

impl SignedPrekeys {
    /// The signed content: the last-resort key as its digest.
    fn content(&self) -> Vec<u8> {
        let mut out = self.head();
        if let Some(lr) = &self.last_resort {
            out.extend_from_slice(&lr.digest());
        }
        self.tail(&mut out);
        out
    }

    fn head(&self) -> Vec<u8> {
        let mut out = vec![self.mode.to_byte()];
        out.extend_from_slice(&self.id.to_be_bytes());
        if let Some(x) = &self.x25519 {
            out.extend_from_slice(x);
        }
        out
    }

    fn tail(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.one_time_count.to_be_bytes());
        out.extend_from_slice(&self.one_time_root);
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

    /// The last-resort KEM prekey (hybrid, quantum; `None` in the compact form).
    pub fn last_resort(&self) -> Option<&KemPublicKey> {
        match &self.last_resort {
            Some(LastResort::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// How many one-time prekeys the signed root covers (0 ..= 1,000).
    pub fn one_time_count(&self) -> u16 {
        self.one_time_count
    }

    /// The Merkle root of the one-time prekeys it covers (32 zero bytes for none).
    pub fn one_time_root(&self) -> &[u8; 32] {
        &self.one_time_root
    }

    /// The encoding in the form held: whole (as uploaded and stored; [`Self::from_bytes`]
    /// reads it), or compact when taken from a bundle that serves a one-time prekey.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head();
        match &self.last_resort {
            Some(LastResort::Key(k)) => out.extend_from_slice(k.as_bytes()),
            Some(LastResort::Digest(d)) => out.extend_from_slice(d),
            None => {}
        }
        self.tail(&mut out);
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// The compact form: the last-resort key replaced by its digest.
    fn compact(mut self) -> Self {
        self.last_resort = self.last_resort.map(|lr| LastResort::Digest(lr.digest()));
        self
    }

    /// Decodes a whole encoding (the whole form).
    ///
    /// # Errors
    /// [`SessionError::Malformed`] on bad structure, an invalid key, a count over 1,000 or a
    /// count of 0 with a root other than zeros.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r, false)?;
        r.finish("signed prekeys")?;
        Ok(v)
    }

    pub(crate) fn read(r: &mut Reader<'_>, compact: bool) -> Result<Self> {
        let mode = CryptoMode::from_byte(r.u8("prekey mode")?)?;
        let id = r.u32("prekey id")?;
        let x25519 = if has_x25519(mode) {
            let k = r.array::<{ x25519::PUBLIC_KEY_LEN }>("signed prekey")?;
            x25519::validate_public(&k)?;
            Some(k)
        } else {
            None
        };
        let last_resort = match (has_last_resort(mode), compact) {
            (false, _) => None,
            (true, true) => Some(LastResort::Digest(r.array("last-resort prekey digest")?)),
            (true, false) => Some(LastResort::Key(Box::new(KemPublicKey::from_bytes(
                mode,
                r.take(kem::public_key_len(mode), "last-resort prekey")?,
            )?))),
        };
        let one_time_count = r.u16("one-time count")?;
        let one_time_root = r.array("one-time root")?;
        if u32::from(one_time_count) > MAX_ONE_TIME_BATCH
            || (one_time_count == 0 && one_time_root != [0; 32])
        {
            return Err(SessionError::malformed("one-time count or root"));
        }
        let signature = Signature::from_bytes(
            mode,
            r.take(sign::signature_len(mode), "signed prekeys signature")?,
        )?;
        Ok(Self {
            mode,
            id,
            x25519,
            last_resort,
            one_time_count,
            one_time_root,
            signature,
        })
    }

    /// Checks the signature under `owner`'s identity key of this mode.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if the owner has no keys of this mode;
    /// [`SessionError::BadPrekeySignature`].
    pub fn verify(&self, owner: &PublicBundle) -> Result<()> {
        let vk = owner
            .verifying_key(self.mode)
            .ok_or(SessionError::ModeMismatch {
                expected: owner.min_mode(),
                got: self.mode,
            })?;
        vk.verify(SigContext::SignedPrekeys, &self.content(), &self.signature)
            .map_err(|_| SessionError::BadPrekeySignature)
    }

    /// A record of these keys and one-time root, signed by `sign` over its content.
    pub(super) fn sign(
        mode: CryptoMode,
        id: u32,
        x25519: Option<[u8; x25519::PUBLIC_KEY_LEN]>,
        last_resort: Option<KemPublicKey>,
        (one_time_count, one_time_root): (u16, [u8; 32]),
        signer: impl FnOnce(&[u8]) -> Result<Signature>,
    ) -> Result<Self> {
        let mut record = Self {
            mode,
            id,
            x25519,
            last_resort: last_resort.map(|k| LastResort::Key(Box::new(k))),
            one_time_count,
            one_time_root,
            // Replaced below, once the content it covers is known.
            signature: Signature::from_bytes(mode, &vec![0; sign::signature_len(mode)])?,
        };
        record.signature = signer(&record.content())?;
        Ok(record)
    }

    /// Whether `batch` is the one this record's root covers.
    pub fn covers(&self, batch: &OneTimeBatch) -> bool {
        batch.len() == self.one_time_count && batch.root() == &self.one_time_root
    }
}

impl PrekeyBundle {
    /// Assembles a bundle from a whole signed-prekeys record and, optionally, a one-time prekey
    /// of the batch it covers.
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if the one-time prekey's mode differs;
    /// [`SessionError::Malformed`] if its index is past the record's one-time count, or for a
    /// compact record (from another bundle) without a one-time prekey.
    pub fn new(signed: SignedPrekeys, one_time: Option<OneTimeInclusion>) -> Result<Self> {
        let Some(o) = one_time else {
            if has_last_resort(signed.mode) && signed.last_resort().is_none() {
                return Err(SessionError::malformed(
                    "a bundle without a one-time prekey carries the whole last-resort key",
                ));
            }
            return Ok(Self {
                signed,
                one_time: None,
            });
        };
        if o.prekey().mode() != signed.mode {
            return Err(SessionError::ModeMismatch {
                expected: signed.mode,
                got: o.prekey().mode(),
            });
        }
        if o.index() >= signed.one_time_count {
            return Err(SessionError::malformed(
                "one-time prekey index past its batch",
            ));
        }
        Ok(Self {
            signed: signed.compact(),
            one_time: Some(o),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.signed.mode
    }

    /// The signed prekeys (compact when a one-time prekey is served).
    pub fn signed(&self) -> &SignedPrekeys {
        &self.signed
    }

    /// The one-time prekey, if the relay had one left.
    pub fn one_time(&self) -> Option<&OneTimePrekey> {
        self.one_time.as_ref().map(OneTimeInclusion::prekey)
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![
            PREKEY_BUNDLE_VERSION,
            self.mode().to_byte(),
            u8::from(self.one_time.is_some()),
        ];
        out.extend_from_slice(&self.signed.to_bytes());
        if let Some(o) = &self.one_time {
            out.extend_from_slice(&o.to_bytes());
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
        let has_one_time = match r.u8("one-time prekey flag")? {
            0 => false,
            1 => true,
            _ => return Err(CryptoError::MalformedBundle("one-time prekey flag").into()),
        };
        let signed = SignedPrekeys::read(&mut r, has_one_time)?;
        let one_time = has_one_time
            .then(|| OneTimeInclusion::read(&mut r, signed.one_time_count))
            .transpose()?;
        r.finish("prekey bundle")?;
        if signed.mode != mode {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: signed.mode,
            });
        }
        if let Some(o) = &one_time
            && o.prekey().mode() != mode
        {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: o.prekey().mode(),
            });
        }
        Ok(Self { signed, one_time })
    }

    /// Checks the signed prekeys' signature under `owner`'s identity and that the one-time
    /// prekey's inclusion proof leads to the signed root.
    ///
    /// # Errors
    /// As [`SignedPrekeys::verify`]; [`SessionError::BadPrekeySignature`] for a proof that
    /// does not lead to the root.
    pub fn verify(&self, owner: &PublicBundle) -> Result<()> {
        self.signed.verify(owner)?;
        if let Some(o) = &self.one_time
            && o.root(self.signed.one_time_count) != Some(self.signed.one_time_root)
        {
            return Err(SessionError::BadPrekeySignature);
        }
        Ok(())
    }
}
