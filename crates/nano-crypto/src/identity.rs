//! Identities that span modes, their public bundles, and mode negotiation.
//!
//! An identity holds a KEM and a signature key pair for its minimum mode and every stronger
//! mode, because adaptive selection picks a mode per message and a KEM can only encapsulate to a
//! key of its own kind. The public bundle lists each mode's keys; each mode's signature key signs
//! the whole key list (proof of possession), so entries cannot be mixed between bundles.
//!
//! ```text
//! core   = version (1) ‖ min_mode (1) ‖ count (1) ‖ { mode (1) ‖ kem_pk ‖ sig_pk }*count
//! bundle = version (1) ‖ min_mode (1) ‖ count (1) ‖ { mode (1) ‖ kem_pk ‖ sig_pk ‖ pop_sig }*count
//! ```

use core::fmt;

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::error::{CryptoError, Result};
use crate::kem::{self, KemKeyPair, KemPublicKey};
use crate::mode::CryptoMode;
use crate::sign::{self, SigContext, Signature, SigningKeyPair, VerifyingKey};

/// Version byte of the bundle and secret-key encodings.
pub const BUNDLE_VERSION: u8 = 1;
const SECRET_VERSION: u8 = 1;
const FINGERPRINT_LABEL: &[u8] = b"nano-messenger/v1 fingerprint";

/// SHA-256 over the bundle's key list: what users compare out of band.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lowercase hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    /// Groups of four hex digits, easy to read aloud.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        for (i, chunk) in hex.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(core::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..16])
    }
}

/// One mode's secret keys.
#[derive(Debug)]
struct ModeKeys {
    kem: KemKeyPair,
    sig: SigningKeyPair,
}

/// A user's (or relay's) secret identity.
pub struct Identity {
    min_mode: CryptoMode,
    keys: Vec<ModeKeys>,
    bundle: PublicBundle,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("min_mode", &self.min_mode)
            .field("fingerprint", &self.bundle.fingerprint)
            .finish_non_exhaustive()
    }
}

/// One mode's public keys and proof of possession.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicModeKeys {
    /// The KEM key.
    pub kem: KemPublicKey,
    /// The signature key.
    pub sig: VerifyingKey,
    /// Signature by `sig` over the bundle core.
    pub pop: Signature,
}

/// A verified public key bundle: every value of this type has passed its proofs of possession.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBundle {
    min_mode: CryptoMode,
    modes: Vec<PublicModeKeys>,
    fingerprint: Fingerprint,
}

impl Identity {
    /// Generates keys for `min_mode` and every stronger mode.
    pub fn generate(min_mode: CryptoMode, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let keys = min_mode
            .and_stronger()
            .map(|m| {
                Ok(ModeKeys {
                    kem: KemKeyPair::generate(m, rng)?,
                    sig: SigningKeyPair::generate(m, rng)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::assemble(min_mode, keys, rng)
    }

    fn assemble(
        min_mode: CryptoMode,
        keys: Vec<ModeKeys>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let publics: Vec<(KemPublicKey, VerifyingKey)> = keys
            .iter()
            .map(|k| (k.kem.public_key(), k.sig.verifying_key()))
            .collect();
        let core = encode_core(min_mode, publics.iter().map(|(k, s)| (k, s)));
        let modes = keys
            .iter()
            .zip(publics)
            .map(|(k, (kem, sig))| {
                Ok(PublicModeKeys {
                    kem,
                    sig,
                    pop: k.sig.sign(SigContext::ProofOfPossession, &core, rng)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bundle = PublicBundle {
            min_mode,
            modes,
            fingerprint: fingerprint_of(&core),
        };
        Ok(Self {
            min_mode,
            keys,
            bundle,
        })
    }

    /// The weakest mode this identity accepts.
    pub fn min_mode(&self) -> CryptoMode {
        self.min_mode
    }

    /// The modes this identity holds keys for, weakest first.
    pub fn modes(&self) -> impl Iterator<Item = CryptoMode> + '_ {
        self.keys.iter().map(|k| k.kem.mode())
    }

    fn keys_for(&self, mode: CryptoMode) -> Option<&ModeKeys> {
        self.keys.iter().find(|k| k.kem.mode() == mode)
    }

    /// The KEM key pair for `mode`, if held.
    pub fn kem(&self, mode: CryptoMode) -> Option<&KemKeyPair> {
        self.keys_for(mode).map(|k| &k.kem)
    }

    /// The signing key pair for `mode`, if held.
    pub fn signer(&self, mode: CryptoMode) -> Option<&SigningKeyPair> {
        self.keys_for(mode).map(|k| &k.sig)
    }

    /// Signs `content` for `ctx` with the `mode` key; fails if this identity holds no such key.
    pub fn sign(
        &self,
        mode: CryptoMode,
        ctx: SigContext,
        content: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Signature> {
        self.signer(mode)
            .ok_or(CryptoError::ModeNotAllowed {
                mode,
                floor: self.min_mode,
            })?
            .sign(ctx, content, rng)
    }

    /// The public bundle.
    pub fn public_bundle(&self) -> &PublicBundle {
        &self.bundle
    }

    /// The fingerprint of the public bundle.
    pub fn fingerprint(&self) -> Fingerprint {
        self.bundle.fingerprint
    }

    /// Encodes the secret seeds: `version ‖ min_mode ‖ { mode ‖ kem_seed ‖ sig_seed }*`.
    /// Store only encrypted.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Sized up front: a reallocation would leave seed copies in freed memory.
        let len = 2 + self
            .keys
            .iter()
            .map(|k| 1 + kem::seed_len(k.kem.mode()) + sign::seed_len(k.kem.mode()))
            .sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(&[SECRET_VERSION, self.min_mode.to_byte()]);
        for k in &self.keys {
            out.push(k.kem.mode().to_byte());
            out.extend_from_slice(k.kem.seed());
            out.extend_from_slice(&k.sig.seed());
        }
        out
    }

    /// Rebuilds an identity from [`Identity::to_secret_bytes`]; proofs of possession are re-made
    /// (ML-DSA signing is hedged, so the bundle bytes differ but the fingerprint does not).
    pub fn from_secret_bytes(bytes: &[u8], rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("identity version")?;
        if version != SECRET_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "identity",
                version,
            });
        }
        let min_mode = CryptoMode::from_byte(r.u8("identity min mode")?)?;
        let mut keys = Vec::new();
        for expected in min_mode.and_stronger() {
            let mode = CryptoMode::from_byte(r.u8("identity mode")?)?;
            kem::expect_mode(expected, mode)?;
            let kem = KemKeyPair::from_seed(mode, r.take(kem::seed_len(mode), "KEM seed")?)?;
            let sig =
                SigningKeyPair::from_seed(mode, r.take(sign::seed_len(mode), "signature seed")?)?;
            keys.push(ModeKeys { kem, sig });
        }
        r.finish("identity")?;
        Self::assemble(min_mode, keys, rng)
    }
}

fn encode_core<'a>(
    min_mode: CryptoMode,
    modes: impl ExactSizeIterator<Item = (&'a KemPublicKey, &'a VerifyingKey)>,
) -> Vec<u8> {
    let mut out = vec![BUNDLE_VERSION, min_mode.to_byte(), modes.len() as u8];
    for (kem, sig) in modes {
        out.push(kem.mode().to_byte());
        out.extend_from_slice(kem.as_bytes());
        out.extend_from_slice(&sig.to_bytes());
    }
    out
}

fn fingerprint_of(core: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_LABEL);
    h.update(core);
    Fingerprint(h.finalize().into())
}

impl PublicBundle {
    /// The weakest mode the owner accepts.
    pub fn min_mode(&self) -> CryptoMode {
        self.min_mode
    }

    /// The modes listed, weakest first.
    pub fn modes(&self) -> impl Iterator<Item = CryptoMode> + '_ {
        self.modes.iter().map(|m| m.kem.mode())
    }

    /// The keys for `mode`, if listed.
    pub fn keys(&self, mode: CryptoMode) -> Option<&PublicModeKeys> {
        self.modes.iter().find(|m| m.kem.mode() == mode)
    }

    /// The KEM key for `mode`, if listed.
    pub fn kem_key(&self, mode: CryptoMode) -> Option<&KemPublicKey> {
        self.keys(mode).map(|k| &k.kem)
    }

    /// The signature key for `mode`, if listed.
    pub fn verifying_key(&self, mode: CryptoMode) -> Option<&VerifyingKey> {
        self.keys(mode).map(|k| &k.sig)
    }

    /// The fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether `other` has the same keys (constant time over the fingerprints).
    pub fn same_keys(&self, other: &PublicBundle) -> bool {
        self.fingerprint.0.ct_eq(&other.fingerprint.0).into()
    }

    /// Encodes the bundle.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![
            BUNDLE_VERSION,
            self.min_mode.to_byte(),
            self.modes.len() as u8,
        ];
        for m in &self.modes {
            out.push(m.kem.mode().to_byte());
            out.extend_from_slice(m.kem.as_bytes());
            out.extend_from_slice(&m.sig.to_bytes());
            out.extend_from_slice(m.pop.as_bytes());
        }
        out
    }

    /// Decodes a bundle and verifies every proof of possession. Rejects unknown versions and
    /// modes, modes out of order, missing or extra modes, wrong lengths and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("bundle version")?;
        if version != BUNDLE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "bundle",
                version,
            });
        }
        let min_mode = CryptoMode::from_byte(r.u8("bundle min mode")?)?;
        let count = usize::from(r.u8("bundle mode count")?);
        if count != min_mode.and_stronger().count() {
            return Err(CryptoError::MalformedBundle(
                "must list exactly the minimum mode and every stronger mode",
            ));
        }
        let mut modes = Vec::with_capacity(count);
        for expected in min_mode.and_stronger() {
            let mode = CryptoMode::from_byte(r.u8("bundle entry mode")?)?;
            if mode != expected {
                return Err(CryptoError::MalformedBundle("modes out of order"));
            }
            let kem =
                KemPublicKey::from_bytes(mode, r.take(kem::public_key_len(mode), "KEM key")?)?;
            let sig = VerifyingKey::from_bytes(
                mode,
                r.take(sign::public_key_len(mode), "signature key")?,
            )?;
            let pop = Signature::from_bytes(
                mode,
                r.take(sign::signature_len(mode), "proof of possession")?,
            )?;
            modes.push(PublicModeKeys { kem, sig, pop });
        }
        r.finish("bundle")?;
        let core = encode_core(min_mode, modes.iter().map(|m| (&m.kem, &m.sig)));
        for m in &modes {
            m.sig
                .verify(SigContext::ProofOfPossession, &core, &m.pop)
                .map_err(|_| CryptoError::BadProofOfPossession(m.sig.mode()))?;
        }
        Ok(Self {
            min_mode,
            modes,
            fingerprint: fingerprint_of(&core),
        })
    }
}

/// The modes two parties can use: held by both and at or above both minimums and every floor
/// (e.g. the relay's `minimum_crypto_mode`), weakest first. Empty means they cannot talk.
pub fn negotiate_modes(
    a: &PublicBundle,
    b: &PublicBundle,
    floors: &[CryptoMode],
) -> Vec<CryptoMode> {
    let floor = floors
        .iter()
        .copied()
        .chain([a.min_mode, b.min_mode])
        .max()
        .unwrap_or(CryptoMode::Classical);
    a.modes()
        .filter(|m| *m >= floor && b.keys(*m).is_some())
        .collect()
}
