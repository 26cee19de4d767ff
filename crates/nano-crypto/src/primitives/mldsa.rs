//! ML-DSA-65 and ML-DSA-87 (FIPS 204, pure mode with a context string) over libcrux-ml-dsa.
//!
//! Keys are derived from the 32-byte seed ξ (FIPS 204 `ML-DSA.KeyGen_internal`), which is what gets
//! stored; the expanded signing key lives in a [`SecureBox`]. Signing is hedged: the caller
//! supplies 32 fresh random bytes per signature.

use zeroize::Zeroize;

use crate::error::{CryptoError, Result};
use crate::secure_mem::SecureBox;

/// Key-generation seed length (ξ).
pub const SEED_LEN: usize = 32;
/// Signing randomness length (`rnd`).
pub const SIGN_RAND_LEN: usize = 32;

macro_rules! ml_dsa {
    ($(#[$doc:meta])* $kp:ident, $pkty:ident, $m:ident, $name:literal, $pk:expr, $sk:expr, $sig:expr) => {
        $(#[$doc])*
        pub struct $kp {
            seed: SecureBox,
            sk: SecureBox,
            public: $pkty,
        }

        /// A verification key.
        #[derive(Clone)]
        pub struct $pkty(libcrux_ml_dsa::MLDSAVerificationKey<$pk>);

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
            /// Signature length.
            pub const SIGNATURE_LEN: usize = $sig;

            /// Decodes a verification key (every bit pattern of the right length is a key).
            pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
                crate::codec::exact_len(bytes, $pk, concat!($name, " public key"))?;
                let mut arr = [0u8; $pk];
                arr.copy_from_slice(bytes);
                Ok(Self(libcrux_ml_dsa::MLDSAVerificationKey::new(arr)))
            }

            /// The encoding.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_slice()
            }

            /// Verifies `sig` over `msg` with context string `ctx` (≤ 255 bytes).
            pub fn verify(&self, msg: &[u8], ctx: &[u8], sig: &[u8]) -> Result<()> {
                crate::codec::exact_len(sig, $sig, concat!($name, " signature"))?;
                let mut arr = [0u8; $sig];
                arr.copy_from_slice(sig);
                let sig = libcrux_ml_dsa::MLDSASignature::new(arr);
                libcrux_ml_dsa::$m::verify(&self.0, msg, ctx, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }

        impl $kp {
            /// Derives the key pair from ξ.
            pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
                let mut kp = libcrux_ml_dsa::$m::generate_key_pair(*seed);
                let sk = SecureBox::from_slice(kp.signing_key.as_slice());
                kp.signing_key.as_mut_slice().zeroize();
                Self {
                    seed: SecureBox::from_slice(seed),
                    sk,
                    public: $pkty(kp.verification_key),
                }
            }

            /// The verification key.
            pub fn public_key(&self) -> &$pkty {
                &self.public
            }

            /// ξ (for encrypted storage only).
            pub fn seed(&self) -> &[u8] {
                self.seed.as_slice()
            }

            /// Signs with an already-expanded FIPS 204 signing key. Known-answer tests only:
            /// real keys are always derived from their seed with [`Self::from_seed`].
            pub fn sign_with_expanded_key(
                sk: &[u8],
                msg: &[u8],
                ctx: &[u8],
                rnd: &[u8; SIGN_RAND_LEN],
            ) -> Result<Vec<u8>> {
                crate::codec::exact_len(sk, $sk, concat!($name, " signing key"))?;
                let mut arr = [0u8; $sk];
                arr.copy_from_slice(sk);
                let mut key = libcrux_ml_dsa::MLDSASigningKey::new(arr);
                arr.zeroize();
                let sig = libcrux_ml_dsa::$m::sign(&key, msg, ctx, *rnd);
                key.as_mut_slice().zeroize();
                sig.map(|s| s.as_slice().to_vec())
                    .map_err(|_| CryptoError::Internal(concat!($name, " sign")))
            }

            /// Signs `msg` with context `ctx` and hedging randomness `rnd`.
            pub fn sign(&self, msg: &[u8], ctx: &[u8], rnd: &[u8; SIGN_RAND_LEN]) -> Result<Vec<u8>> {
                Self::sign_with_expanded_key(self.sk.as_slice(), msg, ctx, rnd)
            }
        }
    };
}

ml_dsa!(
    /// An ML-DSA-65 key pair (hybrid mode, with Ed25519).
    MlDsa65KeyPair, MlDsa65PublicKey, ml_dsa_65, "ML-DSA-65", 1952, 4032, 3309
);
ml_dsa!(
    /// An ML-DSA-87 key pair (quantum mode).
    MlDsa87KeyPair, MlDsa87PublicKey, ml_dsa_87, "ML-DSA-87", 2592, 4896, 4627
);
