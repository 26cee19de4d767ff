//! One KEM per mode: classical DHKEM-X25519, hybrid X-Wing, quantum ML-KEM-1024.
//!
//! Every key and ciphertext knows its mode; operations across modes fail with
//! [`CryptoError::ModeMismatch`] instead of silently downgrading.

use rand_core::CryptoRngCore;
use zeroize::Zeroize;

use crate::codec::arr;
use crate::error::{CryptoError, Result};
use crate::mode::CryptoMode;
use crate::primitives::mlkem::{MlKem1024KeyPair, MlKem1024PublicKey};
use crate::primitives::x25519::{self, X25519KeyPair};
use crate::primitives::xwing::{self, XWingKeyPair, XWingPublicKey};
use crate::secret::SharedSecret;

/// Encoded public-key length for a mode.
pub const fn public_key_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => x25519::PUBLIC_KEY_LEN,
        CryptoMode::Hybrid => xwing::PUBLIC_KEY_LEN,
        CryptoMode::Quantum => MlKem1024PublicKey::LEN,
    }
}

/// Ciphertext length for a mode.
pub const fn ciphertext_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => x25519::PUBLIC_KEY_LEN,
        CryptoMode::Hybrid => xwing::CIPHERTEXT_LEN,
        CryptoMode::Quantum => MlKem1024PublicKey::CIPHERTEXT_LEN,
    }
}

/// Secret seed length for a mode (what is stored).
pub const fn seed_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => x25519::SECRET_KEY_LEN,
        CryptoMode::Hybrid => xwing::SEED_LEN,
        CryptoMode::Quantum => crate::primitives::mlkem::SEED_LEN,
    }
}

/// Encapsulation randomness length for a mode.
pub const fn encaps_rand_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => x25519::SECRET_KEY_LEN,
        CryptoMode::Hybrid => xwing::ENCAPS_RAND_LEN,
        CryptoMode::Quantum => crate::primitives::mlkem::ENCAPS_RAND_LEN,
    }
}

/// A KEM key pair of one mode.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // few, long-lived values; boxing buys nothing
pub enum KemKeyPair {
    /// DHKEM-X25519.
    Classical(X25519KeyPair),
    /// X-Wing.
    Hybrid(XWingKeyPair),
    /// ML-KEM-1024.
    Quantum(MlKem1024KeyPair),
}

/// A KEM public key of one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // few, long-lived values; boxing buys nothing
pub enum KemPublicKey {
    /// X25519 public key.
    Classical([u8; x25519::PUBLIC_KEY_LEN]),
    /// X-Wing encapsulation key.
    Hybrid(XWingPublicKey),
    /// ML-KEM-1024 encapsulation key.
    Quantum(MlKem1024PublicKey),
}

/// A KEM ciphertext of one mode, length-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemCiphertext {
    mode: CryptoMode,
    bytes: Vec<u8>,
}

impl KemKeyPair {
    /// A fresh key pair.
    pub fn generate(mode: CryptoMode, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut seed = zeroize::Zeroizing::new(vec![0u8; seed_len(mode)]);
        rng.try_fill_bytes(&mut seed)
            .map_err(|_| CryptoError::Rng)?;
        Self::from_seed(mode, &seed)
    }

    /// Re-derives a key pair from its stored seed.
    pub fn from_seed(mode: CryptoMode, seed: &[u8]) -> Result<Self> {
        crate::codec::exact_len(seed, seed_len(mode), "KEM seed")?;
        Ok(match mode {
            CryptoMode::Classical => Self::Classical(X25519KeyPair::from_secret(arr(seed)?)?),
            CryptoMode::Hybrid => Self::Hybrid(XWingKeyPair::from_seed(arr(seed)?)?),
            CryptoMode::Quantum => Self::Quantum(MlKem1024KeyPair::from_seed(arr(seed)?)),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        match self {
            Self::Classical(_) => CryptoMode::Classical,
            Self::Hybrid(_) => CryptoMode::Hybrid,
            Self::Quantum(_) => CryptoMode::Quantum,
        }
    }

    /// The stored seed (for encrypted storage only).
    pub fn seed(&self) -> &[u8] {
        match self {
            Self::Classical(k) => k.secret_bytes(),
            Self::Hybrid(k) => k.seed(),
            Self::Quantum(k) => k.seed(),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> KemPublicKey {
        match self {
            Self::Classical(k) => KemPublicKey::Classical(*k.public_key()),
            Self::Hybrid(k) => KemPublicKey::Hybrid(k.public_key().clone()),
            Self::Quantum(k) => KemPublicKey::Quantum(k.public_key().clone()),
        }
    }

    /// Recovers the shared secret from a ciphertext of the same mode.
    pub fn decapsulate(&self, ct: &KemCiphertext) -> Result<SharedSecret> {
        expect_mode(self.mode(), ct.mode)?;
        match self {
            Self::Classical(k) => k.decapsulate(arr(&ct.bytes)?),
            Self::Hybrid(k) => k.decapsulate(&ct.bytes),
            Self::Quantum(k) => k.decapsulate(&ct.bytes),
        }
    }
}

impl KemPublicKey {
    /// Decodes the raw key of `mode` (its length is fixed by the mode).
    pub fn from_bytes(mode: CryptoMode, bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, public_key_len(mode), "KEM public key")?;
        Ok(match mode {
            CryptoMode::Classical => {
                let u: &[u8; x25519::PUBLIC_KEY_LEN] = arr(bytes)?;
                x25519::validate_public(u)?;
                Self::Classical(*u)
            }
            CryptoMode::Hybrid => Self::Hybrid(XWingPublicKey::from_bytes(bytes)?),
            CryptoMode::Quantum => Self::Quantum(MlKem1024PublicKey::from_bytes(bytes)?),
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        match self {
            Self::Classical(_) => CryptoMode::Classical,
            Self::Hybrid(_) => CryptoMode::Hybrid,
            Self::Quantum(_) => CryptoMode::Quantum,
        }
    }

    /// The raw encoding (without a mode tag).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Classical(k) => k,
            Self::Hybrid(k) => k.as_bytes(),
            Self::Quantum(k) => k.as_bytes(),
        }
    }

    /// Encapsulates a fresh shared secret.
    pub fn encapsulate(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(KemCiphertext, SharedSecret)> {
        let mut r = [0u8; 64];
        let n = encaps_rand_len(self.mode());
        rng.try_fill_bytes(&mut r[..n])
            .map_err(|_| CryptoError::Rng)?;
        let out = self.encapsulate_derand(&r[..n]);
        r.zeroize();
        out
    }

    /// Encapsulates with caller-supplied randomness of [`encaps_rand_len`] bytes (known-answer
    /// tests only: the randomness must be uniform and never reused).
    pub fn encapsulate_derand(&self, rand: &[u8]) -> Result<(KemCiphertext, SharedSecret)> {
        crate::codec::exact_len(rand, encaps_rand_len(self.mode()), "KEM randomness")?;
        let (bytes, ss) = match self {
            Self::Classical(pk) => {
                let (enc, ss) = x25519::encapsulate_derand(pk, arr(rand)?)?;
                (enc.to_vec(), ss)
            }
            Self::Hybrid(pk) => pk.encapsulate_derand(arr(rand)?)?,
            Self::Quantum(pk) => {
                let (ct, ss) = pk.encapsulate_derand(arr(rand)?);
                (ct.to_vec(), ss)
            }
        };
        Ok((
            KemCiphertext {
                mode: self.mode(),
                bytes,
            },
            ss,
        ))
    }
}

impl KemCiphertext {
    /// Wraps a ciphertext of `mode`, checking its length.
    pub fn from_bytes(mode: CryptoMode, bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, ciphertext_len(mode), "KEM ciphertext")?;
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

pub(crate) fn expect_mode(expected: CryptoMode, got: CryptoMode) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(CryptoError::ModeMismatch { expected, got })
    }
}
