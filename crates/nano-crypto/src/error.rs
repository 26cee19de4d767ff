//! The crate's one error type.
//!
//! Every failure a peer, a file or a user can cause maps to exactly one variant. Wire codes are
//! not given here: the protocol layer (`nano_proto::ProtoError::code`) maps these variants to
//! the codes that travel in `error` frames and HTTP bodies.

use crate::mode::CryptoMode;

/// What went wrong. Messages never contain key material or plaintext.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A field had the wrong size for its type and mode.
    #[error("{what}: expected {expected} bytes, got {got}")]
    InvalidLength {
        /// The field being decoded.
        what: &'static str,
        /// Its required length.
        expected: usize,
        /// The length that was supplied.
        got: usize,
    },
    /// The input ended before `what` was complete.
    #[error("truncated input while reading {what}")]
    Truncated {
        /// The field being decoded.
        what: &'static str,
    },
    /// Bytes were left over after a complete value was decoded.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The value that was decoded.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A mode byte that names no known mode.
    #[error("unknown crypto mode {0:#04x}")]
    UnknownMode(u8),
    /// A mode name that names no known mode.
    #[error("unknown crypto mode {0:?} (expected classical, hybrid or quantum)")]
    UnknownModeName(String),
    /// An encoded value carried one mode where the context requires another.
    #[error("crypto mode mismatch: expected {expected}, got {got}")]
    ModeMismatch {
        /// The mode the context requires.
        expected: CryptoMode,
        /// The mode the value carried.
        got: CryptoMode,
    },
    /// A mode below a policy floor, or one the peer holds no keys for.
    #[error("crypto mode {mode} is not allowed here (minimum {floor})")]
    ModeNotAllowed {
        /// The mode that was asked for.
        mode: CryptoMode,
        /// The floor it violates.
        floor: CryptoMode,
    },
    /// Two bundles share no mode that satisfies every floor.
    #[error("no crypto mode satisfies both identities and every policy floor")]
    NoCommonMode,
    /// An AEAD id byte that names no known AEAD.
    #[error("unknown AEAD id {0:#04x}")]
    UnknownAead(u8),
    /// A format version this build does not speak.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// The format.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A structurally valid encoding whose contents are not a valid key.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// A bundle lists modes out of order, duplicated, or not exactly its minimum and above.
    #[error("malformed key bundle: {0}")]
    MalformedBundle(&'static str),
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A proof-of-possession signature in a bundle did not verify.
    #[error("proof of possession for {0} keys failed")]
    BadProofOfPossession(CryptoMode),
    /// Key agreement produced an invalid (all-zero) shared secret: a low-order point.
    #[error("key agreement rejected the peer's public key")]
    KeyAgreement,
    /// AEAD authentication failed: the ciphertext, tag, header or key is wrong.
    #[error("decryption failed")]
    Decryption,
    /// An envelope addressed to someone else, or signed by someone other than claimed.
    #[error("envelope {0} does not match the expected identity")]
    IdentityMismatch(&'static str),
    /// A message over the size limit.
    #[error("{what} of {got} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The value.
        what: &'static str,
        /// The limit.
        max: usize,
        /// The size supplied.
        got: usize,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failure")]
    Rng,
    /// An internal primitive failed where it should not (reported, never panicked).
    #[error("internal cryptographic failure in {0}")]
    Internal(&'static str),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = CryptoError> = core::result::Result<T, E>;
