//! Ed25519: signing with aws-lc-rs (fastest here), verification with ed25519-zebra.
//!
//! Verification uses the cofactored equation `[8][s]B = [8]R + [8][k]A` (ZIP 215), for which
//! single and batch verification provably agree, so the [`crate::BatchVerifier`] never accepts
//! what a single check rejects or vice versa. On top of that we are strict where it is cheap and
//! closes malleability: `s` must be canonical (`s < L`), `R` must be a canonical encoding of a
//! point not of small order, and public keys must be canonical encodings of points not of small
//! order (checked once, when decoded).

use aws_lc_rs::signature::{Ed25519KeyPair as AwsKeyPair, KeyPair as _};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::{Signature as ZebraSig, VerificationKey};

use crate::error::{CryptoError, Result};
use crate::secure_mem::SecureBox;

/// Public key length.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Seed length.
pub const SEED_LEN: usize = 32;
/// Signature length.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signing key.
pub struct Ed25519KeyPair {
    seed: SecureBox,
    key: AwsKeyPair,
    public: Ed25519PublicKey,
}

impl core::fmt::Debug for Ed25519KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ed25519KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A validated Ed25519 verification key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ed25519PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    key: VerificationKey,
}

impl core::fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Ed25519({})", super::x25519::hex_short(&self.bytes))
    }
}

impl Ed25519KeyPair {
    /// Derives the key pair from its RFC 8032 seed.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self> {
        let key = AwsKeyPair::from_seed_unchecked(seed)
            .map_err(|_| CryptoError::InvalidKey("ed25519"))?;
        let public = Ed25519PublicKey::from_bytes(key.public_key().as_ref())?;
        Ok(Self {
            seed: SecureBox::from_slice(seed),
            key,
            public,
        })
    }

    /// The verification key.
    pub fn public_key(&self) -> &Ed25519PublicKey {
        &self.public
    }

    /// The seed (for encrypted storage only).
    pub fn seed(&self) -> &[u8] {
        self.seed.as_slice()
    }

    /// Signs `msg` (RFC 8032, deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let sig = self.key.sign(msg);
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(sig.as_ref());
        out
    }
}

impl Ed25519PublicKey {
    /// Decodes a key, rejecting non-canonical encodings and small-order points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, PUBLIC_KEY_LEN, "Ed25519 public key")?;
        let mut arr = [0u8; PUBLIC_KEY_LEN];
        arr.copy_from_slice(bytes);
        if !canonical_large_order(arr) {
            return Err(CryptoError::InvalidKey("ed25519"));
        }
        let key = VerificationKey::try_from(arr).map_err(|_| CryptoError::InvalidKey("ed25519"))?;
        Ok(Self { bytes: arr, key })
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Verifies `sig` over `msg` (cofactored; strict `s`, `R` and key encodings).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        let sig = parse_signature(sig)?;
        self.key
            .verify(&sig, msg)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// Whether `enc` is the canonical encoding of a curve point not of small order.
fn canonical_large_order(enc: [u8; 32]) -> bool {
    CompressedEdwardsY(enc)
        .decompress()
        .is_some_and(|p| !p.is_small_order() && p.compress().to_bytes() == enc)
}

/// Parses a signature, rejecting it up front when `R` is not a canonical encoding of a point of
/// large order (`s` is checked for canonicity by the verification itself).
pub(crate) fn parse_signature(sig: &[u8]) -> Result<ZebraSig> {
    let arr: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| CryptoError::InvalidLength {
        what: "Ed25519 signature",
        expected: SIGNATURE_LEN,
        got: sig.len(),
    })?;
    let mut r = [0u8; 32];
    r.copy_from_slice(&arr[..32]);
    if !canonical_large_order(r) {
        return Err(CryptoError::BadSignature);
    }
    Ok(ZebraSig::from_bytes(&arr))
}
