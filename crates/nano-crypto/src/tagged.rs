//! Standalone, self-describing encodings: `mode (1) ‖ raw value`.
//!
//! Inside a bundle or an envelope the mode is carried once by the container; a key, ciphertext
//! or signature that travels on its own (a relay frame, a config file) uses this form, so its
//! decoder can refuse a mode other than the one the context expects.

use crate::error::{CryptoError, Result};
use crate::kem::{KemCiphertext, KemPublicKey};
use crate::mode::CryptoMode;
use crate::sign::{Signature, VerifyingKey};

/// A value whose encoding is prefixed with its mode byte.
pub trait ModeTagged: Sized {
    /// What the value is, for error messages.
    const WHAT: &'static str;

    /// The value's mode.
    fn tag_mode(&self) -> CryptoMode;

    /// The raw encoding, without the tag.
    fn raw_bytes(&self) -> Vec<u8>;

    /// Decodes the raw encoding of `mode`.
    fn from_raw(mode: CryptoMode, raw: &[u8]) -> Result<Self>;

    /// `mode ‖ raw`.
    fn to_tagged_bytes(&self) -> Vec<u8> {
        let raw = self.raw_bytes();
        let mut out = Vec::with_capacity(1 + raw.len());
        out.push(self.tag_mode().to_byte());
        out.extend_from_slice(&raw);
        out
    }

    /// Decodes `mode ‖ raw` where the context requires `expected`: any other mode is
    /// [`CryptoError::ModeMismatch`]; the raw part must have exactly the mode's length.
    fn from_tagged_bytes(bytes: &[u8], expected: CryptoMode) -> Result<Self> {
        let v = Self::from_tagged_bytes_any_mode(bytes)?;
        crate::kem::expect_mode(expected, v.tag_mode())?;
        Ok(v)
    }

    /// Decodes `mode ‖ raw` of whatever mode it carries. Only for contexts where every mode is
    /// acceptable: the caller must check the result's mode against its policy.
    fn from_tagged_bytes_any_mode(bytes: &[u8]) -> Result<Self> {
        let (&tag, raw) = bytes
            .split_first()
            .ok_or(CryptoError::Truncated { what: Self::WHAT })?;
        Self::from_raw(CryptoMode::from_byte(tag)?, raw)
    }
}

macro_rules! mode_tagged {
    ($ty:ty, $what:literal, |$v:ident| $raw:expr) => {
        impl ModeTagged for $ty {
            const WHAT: &'static str = $what;
            fn tag_mode(&self) -> CryptoMode {
                self.mode()
            }
            fn raw_bytes(&self) -> Vec<u8> {
                let $v = self;
                $raw
            }
            fn from_raw(mode: CryptoMode, raw: &[u8]) -> Result<Self> {
                Self::from_bytes(mode, raw)
            }
        }
    };
}

mode_tagged!(KemPublicKey, "KEM public key", |v| v.as_bytes().to_vec());
mode_tagged!(KemCiphertext, "KEM ciphertext", |v| v.as_bytes().to_vec());
mode_tagged!(VerifyingKey, "signature public key", |v| v.to_bytes());
mode_tagged!(Signature, "signature", |v| v.as_bytes().to_vec());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigContext;
    use crate::{KemKeyPair, SigningKeyPair};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn check<T: ModeTagged + PartialEq + core::fmt::Debug>(v: &T) {
        let mode = v.tag_mode();
        let bytes = v.to_tagged_bytes();
        assert_eq!(bytes[0], mode.to_byte());
        assert_eq!(T::from_tagged_bytes(&bytes, mode).as_ref(), Ok(v));
        assert_eq!(T::from_tagged_bytes_any_mode(&bytes).as_ref(), Ok(v));
        for other in CryptoMode::ALL.into_iter().filter(|m| *m != mode) {
            assert_eq!(
                T::from_tagged_bytes(&bytes, other),
                Err(CryptoError::ModeMismatch {
                    expected: other,
                    got: mode
                })
            );
            // Relabelled as another mode without an expectation: the length no longer fits.
            let mut relabelled = bytes.clone();
            relabelled[0] = other.to_byte();
            assert!(T::from_tagged_bytes_any_mode(&relabelled).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            T::from_tagged_bytes(&long, mode),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert!(matches!(
            T::from_tagged_bytes(&bytes[..bytes.len() - 1], mode),
            Err(CryptoError::InvalidLength { .. })
        ));
        assert_eq!(
            T::from_tagged_bytes_any_mode(&[]),
            Err(CryptoError::Truncated { what: T::WHAT })
        );
        assert_eq!(
            T::from_tagged_bytes_any_mode(&[9]),
            Err(CryptoError::UnknownMode(9))
        );
    }

    #[test]
    fn tagged_encodings_round_trip_and_reject_confusion() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for mode in CryptoMode::ALL {
            let kem = KemKeyPair::generate(mode, &mut rng).unwrap();
            let pk = kem.public_key();
            let (ct, _) = pk.encapsulate(&mut rng).unwrap();
            let sk = SigningKeyPair::generate(mode, &mut rng).unwrap();
            let sig = sk.sign(SigContext::RelayAuth, b"x", &mut rng).unwrap();
            check(&pk);
            check(&ct);
            check(&sk.verifying_key());
            check(&sig);
        }
    }
}
