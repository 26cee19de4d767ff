//! ML-KEM-768 and ML-KEM-1024 (FIPS 203) over libcrux-ml-kem.
//!
//! Keys are derived from the 64-byte seed `d ‖ z` (FIPS 203 `ML-KEM.KeyGen_internal`), which is
//! what gets stored; the expanded decapsulation key lives in a [`SecureBox`]. Encapsulation keys
//! pass the FIPS 203 §7.2 modulus check when decoded.

use zeroize::Zeroize;

use crate::error::{CryptoError, Result};
use crate::secret::SharedSecret;
use crate::secure_mem::SecureBox;

/// Key-generation seed length (`d ‖ z`).
pub const SEED_LEN: usize = 64;
/// Encapsulation randomness length (`m`).
pub const ENCAPS_RAND_LEN: usize = 32;

macro_rules! ml_kem {
    ($(#[$doc:meta])* $kp:ident, $pkty:ident, $m:ident, $name:literal, $pk:expr, $sk:expr, $ct:expr) => {
        $(#[$doc])*
        pub struct $kp {
            seed: SecureBox,
            sk: SecureBox,
            public: $pkty,
        }

        /// A validated encapsulation key.
        #[derive(Clone)]
        pub struct $pkty(libcrux_ml_kem::MlKemPublicKey<$pk>);

        impl PartialEq for $pkty {
            fn eq(&self, other: &Self) -> bool {
                self.as_bytes() == other.as_bytes()
            }
        }
        impl Eq for $pkty {}

        impl core::fmt::Debug for $pkty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}({})", $name, super::x25519::hex_short(self.as_bytes()))
            }
        }

        impl core::fmt::Debug for $kp {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($kp)).field("public", &self.public).finish_non_exhaustive()
            }
        }

        impl $pkty {
            /// Encoded length.
            pub const LEN: usize = $pk;
            /// Ciphertext length.
            pub const CIPHERTEXT_LEN: usize = $ct;

            /// Decodes and validates an encapsulation key.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
                crate::codec::exact_len(bytes, $pk, concat!($name, " public key"))?;
                let pk = libcrux_ml_kem::MlKemPublicKey::<$pk>::try_from(bytes)
                    .map_err(|_| CryptoError::InvalidKey($name))?;
                if !libcrux_ml_kem::$m::validate_public_key(&pk) {
                    return Err(CryptoError::InvalidKey($name));
                }
                Ok(Self(pk))
            }

            /// The encoding.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_ref()
            }

            /// Encapsulates with randomness `m` (uniform, used once).
            pub fn encapsulate_derand(
                &self,
                m: &[u8; ENCAPS_RAND_LEN],
            ) -> ([u8; $ct], SharedSecret) {
                let (ct, mut ss) = libcrux_ml_kem::$m::encapsulate(&self.0, *m);
                let shared = SharedSecret::new(ss);
                ss.zeroize();
                let mut out = [0u8; $ct];
                out.copy_from_slice(ct.as_ref());
                (out, shared)
            }
        }

        impl $kp {
            /// Derives the key pair from `d ‖ z`.
            pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
                let kp = libcrux_ml_kem::$m::generate_key_pair(*seed);
                let (mut sk, pk) = kp.into_parts();
                let boxed = SecureBox::from_slice(sk.as_ref());
                sk[..$sk].zeroize();
                Self {
                    seed: SecureBox::from_slice(seed),
                    sk: boxed,
                    public: $pkty(pk),
                }
            }

            /// Derives a short-lived key pair from `d ‖ z` without locked pages: the expanded
            /// decapsulation key (for [`Self::decapsulate_with_expanded_key`]) in zeroizing
            /// memory, and the encapsulation key. For ratchet keys, which live for one epoch.
            pub fn generate_expanded(
                seed: &[u8; SEED_LEN],
            ) -> (zeroize::Zeroizing<Vec<u8>>, $pkty) {
                let kp = libcrux_ml_kem::$m::generate_key_pair(*seed);
                let (mut sk, pk) = kp.into_parts();
                let dk = zeroize::Zeroizing::new(sk.as_ref().to_vec());
                sk[..$sk].zeroize();
                (dk, $pkty(pk))
            }

            /// The encapsulation key.
            pub fn public_key(&self) -> &$pkty {
                &self.public
            }

            /// The 64-byte seed (for encrypted storage only).
            pub fn seed(&self) -> &[u8] {
                self.seed.as_slice()
            }

            /// Decapsulates. ML-KEM never fails on a well-sized ciphertext (implicit rejection):
            /// a forged one yields an unrelated secret that fails the AEAD later.
            pub fn decapsulate(&self, ct: &[u8]) -> Result<SharedSecret> {
                Self::decapsulate_with_expanded_key(self.sk.as_slice(), ct)
            }

            /// Decapsulates with an already-expanded FIPS 203 decapsulation key: a ratchet key
            /// from [`Self::generate_expanded`], or a known-answer test's key.
            pub fn decapsulate_with_expanded_key(dk: &[u8], ct: &[u8]) -> Result<SharedSecret> {
                crate::codec::exact_len(dk, $sk, concat!($name, " decapsulation key"))?;
                crate::codec::exact_len(ct, $ct, concat!($name, " ciphertext"))?;
                let ct = libcrux_ml_kem::MlKemCiphertext::<$ct>::try_from(ct)
                    .map_err(|_| CryptoError::Internal($name))?;
                let mut sk = libcrux_ml_kem::MlKemPrivateKey::<$sk>::try_from(dk)
                    .map_err(|_| CryptoError::Internal($name))?;
                let mut ss = libcrux_ml_kem::$m::decapsulate(&sk, &ct);
                sk[..$sk].zeroize();
                let shared = SharedSecret::new(ss);
                ss.zeroize();
                Ok(shared)
            }
        }
    };
}

ml_kem!(
    /// An ML-KEM-768 key pair (used inside X-Wing).
    MlKem768KeyPair, MlKem768PublicKey, mlkem768, "ML-KEM-768", 1184, 2400, 1088
);
ml_kem!(
    /// An ML-KEM-1024 key pair (quantum mode).
    MlKem1024KeyPair, MlKem1024PublicKey, mlkem1024, "ML-KEM-1024", 1568, 3168, 1568
);
