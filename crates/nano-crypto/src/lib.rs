//! Nano-Messenger cryptography: three suites, sealed envelopes, and the performance machinery.
//!
//! Pure computation: no I/O, no async runtime. Data flows bottom-up:
//!
//! ```text
//! mode          CryptoMode (classical < hybrid < quantum) and its encodings
//! primitives/   vetted implementations behind typed wrappers (aws-lc-rs, libcrux, zebra)
//!   ├─ kem      one KEM per CryptoMode (DHKEM-X25519 | X-Wing | ML-KEM-1024)
//!   ├─ sign     one signature per CryptoMode (Ed25519 | ML-DSA-65+Ed25519 | ML-DSA-87)
//!   ├─ aead     ChaCha20-Poly1305 | AES-256-GCM, chosen by accel
//!   └─ kdf      HKDF-SHA256 with one label per use
//! identity      key pairs for a minimum mode and every stronger one; public bundles + PoP
//! envelope      seal/open: KEM → HKDF → AEAD(header as AAD) → signature over everything
//! session/      prekeys, the signed PQXDH-shaped handshake, the triple ratchet (chains, X25519
//!               DH ratchet, sparse ML-KEM ratchet), session state as bytes
//! adaptive      AdaptiveCryptoConfig::select_mode(MessageContext), raised to policy floors
//! key_cache     bounded LRU + TTL of ephemeral KEM key pairs and derived keys
//! batch         BatchVerifier: Ed25519 batch equation, ML-DSA across cores, fallback per item
//! tagged        standalone `mode ‖ value` encodings for keys, ciphertexts, signatures
//! secret        small zeroizing, constant-time, `***`-printing secrets
//! secure_mem    mlock'ed pages for long-lived keys (the crate's only unsafe code)
//! accel         CPU feature detection; picks the default AEAD
//! codec         the bounds-checked reader every decoder uses
//! error         CryptoError and its stable wire codes
//! channel       the relay key_exchange channel key and its HMAC confirmation
//! ```
#![deny(unsafe_code)]

pub mod accel;
pub mod adaptive;
pub mod aead;
pub mod batch;
pub mod channel;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod identity;
pub mod kdf;
pub mod kem;
pub mod key_cache;
pub mod mode;
pub mod primitives;
pub mod secret;
pub mod secure_mem;
pub mod session;
pub mod sign;
pub mod tagged;

pub use accel::CryptoAcceleration;
pub use adaptive::{AUTOMATIC_FLOOR, AdaptiveCryptoConfig, DataClass, MessageContext, ThreatLevel};
pub use aead::{AeadId, AeadKey};
pub use batch::{BatchVerifier, VerificationResult, VerificationTask};
pub use envelope::{Envelope, EnvelopeHeader, open, open_many, seal};
pub use error::{CryptoError, Result};
pub use identity::{Fingerprint, Identity, PublicBundle, negotiate_modes};
pub use kem::{KemCiphertext, KemKeyPair, KemPublicKey};
pub use key_cache::{Clock, KeyCache, KeyCacheStats, ManualClock, MonotonicClock};
pub use mode::CryptoMode;
pub use secret::{SecretBytes, SharedSecret, SymmetricKey};
pub use secure_mem::{SecureAllocator, SecureBox, SecureMemoryStats};
pub use session::{
    OneTimePrekey, OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SessionError,
    SignedPrekeySecrets, SignedPrekeys,
};
pub use sign::{SigContext, Signature, SigningKeyPair, VerifyingKey};
pub use tagged::ModeTagged;

/// The operating system's CSPRNG, the default randomness source.
pub use rand_core::OsRng;
