//! `SessionError`: what can go wrong in a session, one variant per cause a caller acts on.

use crate::error::CryptoError;
use crate::mode::CryptoMode;

/// A session failure. Messages never contain key material or plaintext. A failed call leaves
/// the session exactly as it was.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The handshake names a prekey this side does not hold (never issued, rotated out, or a
    /// one-time prekey already used: a replayed handshake).
    #[error("unknown {kind} prekey {id}")]
    UnknownPrekey {
        /// `"signed"` or `"one-time"`.
        kind: &'static str,
        /// The prekey id named.
        id: u32,
    },
    /// A prekey signature does not verify under the owner's identity key.
    #[error("prekey signature does not verify")]
    BadPrekeySignature,
    /// The initiator's signature over the handshake transcript does not verify.
    #[error("handshake transcript signature does not verify")]
    BadTranscriptSignature,
    /// A value of one mode where another was expected (a prekey, handshake or message of
    /// another mode, or an identity without keys for the mode).
    #[error("session mode mismatch: expected {expected}, got {got}")]
    ModeMismatch {
        /// The mode the context requires.
        expected: CryptoMode,
        /// The mode found.
        got: CryptoMode,
    },
    /// The handshake is addressed to someone else, or claims an initiator other than the
    /// identity given for the sender.
    #[error("handshake {0} fingerprint does not match")]
    WrongIdentity(&'static str),
    /// A message more than [`crate::session::MAX_SKIP_PER_CHAIN`] keys ahead of its chain.
    #[error("message is {skip} keys ahead of its chain; the limit is {limit}")]
    TooFarAhead {
        /// How many keys it would skip.
        skip: u64,
        /// The limit.
        limit: u32,
    },
    /// The message's key was already used (a replay) or is no longer held (evicted).
    #[error("message key already used or no longer held")]
    Duplicate,
    /// A message of a KEM epoch whose key this side does not hold.
    #[error("KEM epoch {0} is not held")]
    UnknownEpoch(u32),
    /// Bytes that do not decode (the cause names the field).
    #[error("malformed session data: {0}")]
    Malformed(CryptoError),
    /// AEAD authentication failed: a forged, corrupted or misrouted message.
    #[error("session message does not decrypt")]
    DecryptFailed,
    /// A primitive or the random number generator failed.
    #[error(transparent)]
    Crypto(CryptoError),
}

impl SessionError {
    /// [`SessionError::Malformed`] for a structural fault that names itself (`what`).
    pub(crate) fn malformed(what: &'static str) -> Self {
        Self::Malformed(CryptoError::MalformedBundle(what))
    }

    /// A stable, lowercase code for logs and the wire.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::UnknownPrekey { .. } => "unknown_prekey",
            Self::BadPrekeySignature => "bad_prekey_signature",
            Self::BadTranscriptSignature => "bad_transcript_signature",
            Self::ModeMismatch { .. } => "mode_mismatch",
            Self::WrongIdentity(_) => "wrong_identity",
            Self::TooFarAhead { .. } => "too_far_ahead",
            Self::Duplicate => "duplicate",
            Self::UnknownEpoch(_) => "unknown_epoch",
            Self::Malformed(_) => "malformed",
            Self::DecryptFailed => "decrypt_failed",
            Self::Crypto(_) => "crypto_failure",
        }
    }
}

impl From<CryptoError> for SessionError {
    /// Decoding errors are `Malformed`; a mode mismatch keeps its modes; the rest are `Crypto`.
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::ModeMismatch { expected, got } => Self::ModeMismatch { expected, got },
            CryptoError::InvalidLength { .. }
            | CryptoError::Truncated { .. }
            | CryptoError::TrailingBytes { .. }
            | CryptoError::UnknownMode(_)
            | CryptoError::UnknownAead(_)
            | CryptoError::UnsupportedVersion { .. }
            | CryptoError::InvalidKey(_)
            | CryptoError::MalformedBundle(_)
            | CryptoError::TooLarge { .. } => Self::Malformed(e),
            CryptoError::Decryption | CryptoError::KeyAgreement => Self::DecryptFailed,
            other => Self::Crypto(other),
        }
    }
}
