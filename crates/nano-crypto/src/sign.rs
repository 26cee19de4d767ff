//! One signature scheme per mode: Ed25519, composite ML-DSA-65 + Ed25519, ML-DSA-87.
//!
//! Every scheme signs the same domain-separated message (see `docs/PROTOCOL.md` §Signatures):
//!
//! ```text
//! tbs = "nano-messenger/v1 sig" ‖ mode (1) ‖ len(context) (1) ‖ context ‖ SHA-512(content)
//! ```
//!
//! The mode byte means a hybrid signature's Ed25519 half can never pass as a classical signature,
//! and the context means a signature made for one purpose is useless for another. ML-DSA also
//! receives the FIPS 204 context string `"nano-messenger/v1"`. The composite signature is
//! `ML-DSA-65 sig (3309) ‖ Ed25519 sig (64)` and verifies only if both halves do.

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use crate::codec::arr;
use crate::error::{CryptoError, Result};
use crate::kem::expect_mode;
use crate::mode::CryptoMode;
use crate::primitives::ed25519::{self, Ed25519KeyPair, Ed25519PublicKey};
use crate::primitives::mldsa::{
    self, MlDsa65KeyPair, MlDsa65PublicKey, MlDsa87KeyPair, MlDsa87PublicKey,
};

const TBS_LABEL: &[u8] = b"nano-messenger/v1 sig";
/// The FIPS 204 context string given to ML-DSA.
pub const MLDSA_CONTEXT: &[u8] = b"nano-messenger/v1";

/// What a signature is for. Closed, so every purpose has exactly one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigContext {
    /// A sealed envelope.
    Envelope,
    /// Proof of possession of one mode's keys in a bundle.
    ProofOfPossession,
    /// A client's `auth`: its answer to a relay's `challenge`.
    RelayAuth,
    /// A relay's `challenge`: its proof of identity on one connection.
    RelayChallenge,
    /// A relay's ephemeral `key_exchange` key.
    RelayKeyExchange,
    /// A key rotation request.
    KeyRotation,
    /// A user's signed prekeys for sessions (X25519 signed prekey, last-resort KEM prekey and
    /// the Merkle root of a batch of one-time prekeys).
    SignedPrekeys,
    /// A session handshake transcript, signed by its initiator.
    SessionHandshake,
}

impl SigContext {
    /// The context bytes (part of the protocol; never change).
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Envelope => b"envelope",
            Self::ProofOfPossession => b"proof-of-possession",
            Self::RelayAuth => b"relay-auth",
            Self::RelayChallenge => b"relay-challenge",
            Self::RelayKeyExchange => b"relay-key-exchange",
            Self::KeyRotation => b"key-rotation",
            Self::SignedPrekeys => b"signed-prekeys",
            Self::SessionHandshake => b"session-handshake",
        }
    }
}

/// Builds the to-be-signed message.
pub fn to_be_signed(mode: CryptoMode, ctx: SigContext, content: &[u8]) -> Vec<u8> {
    let c = ctx.as_bytes();
    let mut tbs = Vec::with_capacity(TBS_LABEL.len() + 2 + c.len() + 64);
    tbs.extend_from_slice(TBS_LABEL);
    tbs.push(mode.to_byte());
    tbs.push(c.len() as u8);
    tbs.extend_from_slice(c);
    tbs.extend_from_slice(&Sha512::digest(content));
    tbs
}

/// Public key length for a mode.
pub const fn public_key_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => ed25519::PUBLIC_KEY_LEN,
        CryptoMode::Hybrid => MlDsa65PublicKey::LEN + ed25519::PUBLIC_KEY_LEN,
        CryptoMode::Quantum => MlDsa87PublicKey::LEN,
    }
}

/// Signature length for a mode.
pub const fn signature_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => ed25519::SIGNATURE_LEN,
        CryptoMode::Hybrid => MlDsa65PublicKey::SIGNATURE_LEN + ed25519::SIGNATURE_LEN,
        CryptoMode::Quantum => MlDsa87PublicKey::SIGNATURE_LEN,
    }
}

/// Stored seed length for a mode.
pub const fn seed_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => ed25519::SEED_LEN,
        CryptoMode::Hybrid => mldsa::SEED_LEN + ed25519::SEED_LEN,
        CryptoMode::Quantum => mldsa::SEED_LEN,
    }
}

/// A signing key pair of one mode.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // few, long-lived values; boxing buys nothing
pub enum SigningKeyPair {
    /// Ed25519.
    Classical(Ed25519KeyPair),
    /// ML-DSA-65 and Ed25519 together.
    Hybrid(MlDsa65KeyPair, Ed25519KeyPair),
    /// ML-DSA-87.
    Quantum(MlDsa87KeyPair),
}

/// A verification key of one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // few, long-lived values; boxing buys nothing
pub enum VerifyingKey {
    /// Ed25519.
    Classical(Ed25519PublicKey),
    /// ML-DSA-65 and Ed25519 together.
    Hybrid(MlDsa65PublicKey, Ed25519PublicKey),
    /// ML-DSA-87.
    Quantum(MlDsa87PublicKey),
}

/// A signature of one mode, length-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    mode: CryptoMode,
    bytes: Vec<u8>,
}

impl SigningKeyPair {
    /// A fresh key pair.
    pub fn generate(mode: CryptoMode, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut seed = zeroize::Zeroizing::new(vec![0u8; seed_len(mode)]);
        rng.try_fill_bytes(&mut seed)
            .map_err(|_| CryptoError::Rng)?;
        Self::from_seed(mode, &seed)
    }

    /// Re-derives a key pair from its stored seed (hybrid: ML-DSA ξ ‖ Ed25519 seed).
    pub fn from_seed(mode: CryptoMode, seed: &[u8]) -> Result<Self> {
        crate::codec::exact_len(seed, seed_len(mode), "signature seed")?;
        Ok(match mode {
            CryptoMode::Classical => Self::Classical(Ed25519KeyPair::from_seed(arr(seed)?)?),
            CryptoMode::Hybrid => {
                let (m, e) = seed.split_at(mldsa::SEED_LEN);
                Self::Hybrid(
                    MlDsa65KeyPair::from_seed(arr(m)?),
                    Ed25519KeyPair::from_seed(arr(e)?)?,
                )
            }
            CryptoMode::Quantum => Self::Quantum(MlDsa87KeyPair::from_seed(arr(seed)?)),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        match self {
            Self::Classical(_) => CryptoMode::Classical,
            Self::Hybrid(..) => CryptoMode::Hybrid,
            Self::Quantum(_) => CryptoMode::Quantum,
        }
    }

    /// The stored seed, concatenated for hybrid (for encrypted storage only).
    pub fn seed(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(seed_len(self.mode())));
        match self {
            Self::Classical(k) => out.extend_from_slice(k.seed()),
            Self::Hybrid(m, e) => {
                out.extend_from_slice(m.seed());
                out.extend_from_slice(e.seed());
            }
            Self::Quantum(k) => out.extend_from_slice(k.seed()),
        }
        out
    }

    /// The verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Classical(k) => VerifyingKey::Classical(k.public_key().clone()),
            Self::Hybrid(m, e) => {
                VerifyingKey::Hybrid(m.public_key().clone(), e.public_key().clone())
            }
            Self::Quantum(k) => VerifyingKey::Quantum(k.public_key().clone()),
        }
    }

    /// Signs `content` for purpose `ctx`. ML-DSA signing is hedged with 32 bytes from `rng`.
    pub fn sign(
        &self,
        ctx: SigContext,
        content: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Signature> {
        let tbs = to_be_signed(self.mode(), ctx, content);
        let mut rnd = [0u8; mldsa::SIGN_RAND_LEN];
        if !matches!(self, Self::Classical(_)) {
            rng.try_fill_bytes(&mut rnd).map_err(|_| CryptoError::Rng)?;
        }
        let bytes = match self {
            Self::Classical(k) => k.sign(&tbs).to_vec(),
            Self::Hybrid(m, e) => {
                let mut b = m.sign(&tbs, MLDSA_CONTEXT, &rnd)?;
                b.extend_from_slice(&e.sign(&tbs));
                b
            }
            Self::Quantum(k) => k.sign(&tbs, MLDSA_CONTEXT, &rnd)?,
        };
        rnd.zeroize();
        Ok(Signature {
            mode: self.mode(),
            bytes,
        })
    }
}

impl VerifyingKey {
    /// Decodes the raw key of `mode` (hybrid: ML-DSA-65 key ‖ Ed25519 key).
    pub fn from_bytes(mode: CryptoMode, bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, public_key_len(mode), "signature public key")?;
        Ok(match mode {
            CryptoMode::Classical => Self::Classical(Ed25519PublicKey::from_bytes(bytes)?),
            CryptoMode::Hybrid => {
                let (m, e) = bytes.split_at(MlDsa65PublicKey::LEN);
                Self::Hybrid(
                    MlDsa65PublicKey::from_bytes(m)?,
                    Ed25519PublicKey::from_bytes(e)?,
                )
            }
            CryptoMode::Quantum => Self::Quantum(MlDsa87PublicKey::from_bytes(bytes)?),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        match self {
            Self::Classical(_) => CryptoMode::Classical,
            Self::Hybrid(..) => CryptoMode::Hybrid,
            Self::Quantum(_) => CryptoMode::Quantum,
        }
    }

    /// The raw encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Classical(k) => k.as_bytes().to_vec(),
            Self::Hybrid(m, e) => [m.as_bytes(), e.as_bytes()].concat(),
            Self::Quantum(k) => k.as_bytes().to_vec(),
        }
    }

    /// Verifies `sig` over `content` for purpose `ctx`. Hybrid requires both halves.
    pub fn verify(&self, ctx: SigContext, content: &[u8], sig: &Signature) -> Result<()> {
        expect_mode(self.mode(), sig.mode)?;
        let tbs = to_be_signed(self.mode(), ctx, content);
        self.verify_tbs(&tbs, &sig.bytes)
    }

    /// Verifies a signature over an already-built `tbs`.
    pub(crate) fn verify_tbs(&self, tbs: &[u8], sig: &[u8]) -> Result<()> {
        match self {
            Self::Classical(k) => k.verify(tbs, sig),
            Self::Hybrid(m, e) => {
                let (ms, es) = split_hybrid(sig)?;
                // Both halves are always checked; the result is their conjunction.
                let a = m.verify(tbs, MLDSA_CONTEXT, ms);
                let b = e.verify(tbs, es);
                a.and(b)
            }
            Self::Quantum(k) => k.verify(tbs, MLDSA_CONTEXT, sig),
        }
    }
}

pub(crate) fn split_hybrid(sig: &[u8]) -> Result<(&[u8], &[u8])> {
    crate::codec::exact_len(sig, signature_len(CryptoMode::Hybrid), "hybrid signature")?;
    Ok(sig.split_at(MlDsa65PublicKey::SIGNATURE_LEN))
}

impl Signature {
    /// Wraps a signature of `mode`, checking its length.
    pub fn from_bytes(mode: CryptoMode, bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, signature_len(mode), "signature")?;
        Ok(Self {
            mode,
            bytes: bytes.to_vec(),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The raw encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
