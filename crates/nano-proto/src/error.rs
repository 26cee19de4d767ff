//! The crate's error type and the stable wire codes of every error a peer can be told about.
//!
//! `ErrorCode` is the vocabulary of `error` frames and HTTP error bodies across the whole system;
//! [`ProtoError::code`] is the one place decoding failures become codes.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string forms never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON / not a valid binary frame.
    MalformedFrame,
    /// An HTTP request body that is not UTF-8 JSON.
    MalformedBody,
    /// The frame's `type` names no known message.
    UnknownType,
    /// A field is missing, has the wrong type, or an invalid value.
    InvalidField,
    /// The frame exceeds a size limit.
    FrameTooLarge,
    /// The message payload exceeds a size limit.
    MessageTooLarge,
    /// The operation needs authentication.
    Unauthorized,
    /// Authentication failed (bad signature, unknown user, stale challenge).
    AuthFailed,
    /// A login (`hello`) over a plain connection from a peer that is not on loopback: logins
    /// need TLS, so they can be bound to the channel (PROTOCOL.md §12).
    TlsRequired,
    /// A `key_exchange` completion for a key whose `expires_at_ms` has passed.
    KeyExpired,
    /// The crypto mode is below the relay's or a user's floor, or not held by a user.
    ModeNotAllowed,
    /// A `send_message` whose `crypto_mode` label differs from the mode in its envelope's
    /// header (PROTOCOL.md §6): the relay judges what the message is, not its label.
    ModeMismatch,
    /// A `send_message` whose `id` differs from the `message_id` in its envelope's header.
    IdMismatch,
    /// A `send_message` payload that is not a sealed envelope (standard base64 of §6 bytes),
    /// on a relay that accepts envelopes only.
    NotAnEnvelope,
    /// The recipient is not registered.
    UnknownRecipient,
    /// The user does not exist.
    NotFound,
    /// The user has published no signed prekeys for the requested mode (`get_prekeys`): no
    /// session can start there; a sealed envelope still can.
    NoPrekeys,
    /// The username is already registered.
    NameTaken,
    /// The bundle (its fingerprint) is already registered to another name: one bundle belongs
    /// to one name.
    KeyTaken,
    /// A key or bundle that does not decode or is not usable.
    InvalidKey,
    /// A signature (over a registration claim, a rotation, an `auth` transcript) that does not
    /// verify.
    InvalidSignature,
    /// The request was not received completely in time (HTTP 408).
    RequestTimeout,
    /// Too many requests.
    RateLimited,
    /// The recipient's inbox is full.
    InboxFull,
    /// The relay is shutting down or its storage is unavailable.
    Unavailable,
    /// An unexpected server-side failure (details only in the relay's logs).
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (metrics start a series for each).
    pub const ALL: [ErrorCode; 26] = [
        Self::MalformedFrame,
        Self::MalformedBody,
        Self::UnknownType,
        Self::InvalidField,
        Self::FrameTooLarge,
        Self::MessageTooLarge,
        Self::Unauthorized,
        Self::AuthFailed,
        Self::TlsRequired,
        Self::KeyExpired,
        Self::ModeNotAllowed,
        Self::ModeMismatch,
        Self::IdMismatch,
        Self::NotAnEnvelope,
        Self::UnknownRecipient,
        Self::NotFound,
        Self::NoPrekeys,
        Self::NameTaken,
        Self::KeyTaken,
        Self::InvalidKey,
        Self::InvalidSignature,
        Self::RequestTimeout,
        Self::RateLimited,
        Self::InboxFull,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::MalformedBody => "malformed_body",
            Self::UnknownType => "unknown_type",
            Self::InvalidField => "invalid_field",
            Self::FrameTooLarge => "frame_too_large",
            Self::MessageTooLarge => "message_too_large",
            Self::Unauthorized => "unauthorized",
            Self::AuthFailed => "auth_failed",
            Self::TlsRequired => "tls_required",
            Self::KeyExpired => "key_expired",
            Self::ModeNotAllowed => "mode_not_allowed",
            Self::ModeMismatch => "mode_mismatch",
            Self::IdMismatch => "id_mismatch",
            Self::NotAnEnvelope => "not_an_envelope",
            Self::UnknownRecipient => "unknown_recipient",
            Self::NotFound => "not_found",
            Self::NoPrekeys => "no_prekeys",
            Self::NameTaken => "name_taken",
            Self::KeyTaken => "key_taken",
            Self::InvalidKey => "invalid_key",
            Self::InvalidSignature => "invalid_signature",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::InboxFull => "inbox_full",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame or body could not be decoded. Messages name the field, never echo its content.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not JSON, truncated binary, bad UTF-8, trailing bytes.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// An HTTP request body that is not UTF-8 or not JSON.
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// An unknown frame type.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// A field missing or invalid.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A frame over the size limit.
    #[error("frame of {got} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The limit.
        max: usize,
        /// The size.
        got: usize,
    },
    /// A message payload over the size limit.
    #[error("message of {got} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The limit.
        max: usize,
        /// The size.
        got: usize,
    },
    /// A signature field that does not decode (wrong length for its mode).
    #[error("invalid signature: {0}")]
    Signature(nano_crypto::CryptoError),
    /// A cryptographic value (key, bundle, signature) that does not decode or verify.
    #[error("invalid key material: {0}")]
    Crypto(#[from] nano_crypto::CryptoError),
}

/// What a serde_json failure says about its input, without echoing it: not JSON at all, or
/// JSON of the wrong shape. Both JSON decoders (frames, HTTP bodies) classify through here.
pub(crate) enum JsonFault {
    /// Not valid JSON: the message names the column.
    Syntax(String),
    /// Valid JSON with a field missing, unknown or of the wrong type.
    Shape(String),
}

impl JsonFault {
    pub(crate) fn of(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Self::Syntax(format!("not valid JSON (column {})", err.column()))
            }
            Category::Data => Self::Shape(format!(
                "a field is missing, unknown or of the wrong type (column {})",
                err.column()
            )),
        }
    }
}

impl ProtoError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) => ErrorCode::MalformedFrame,
            Self::MalformedBody(_) => ErrorCode::MalformedBody,
            Self::Signature(_) => ErrorCode::InvalidSignature,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::Crypto(nano_crypto::CryptoError::ModeNotAllowed { .. })
            | Self::Crypto(nano_crypto::CryptoError::NoCommonMode) => ErrorCode::ModeNotAllowed,
            // Our own failures, not the peer's.
            Self::Crypto(nano_crypto::CryptoError::BadSignature) => ErrorCode::InvalidSignature,
            Self::Crypto(nano_crypto::CryptoError::Rng)
            | Self::Crypto(nano_crypto::CryptoError::Internal(_)) => ErrorCode::Internal,
            Self::Crypto(_) => ErrorCode::InvalidKey,
        }
    }

    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new code must be added to `ALL` (the match below stops compiling without it, and the
    /// count and uniqueness checks catch a missing or repeated entry).
    #[test]
    fn all_lists_every_code_once() {
        let position = |c: ErrorCode| match c {
            ErrorCode::MalformedFrame
            | ErrorCode::MalformedBody
            | ErrorCode::UnknownType
            | ErrorCode::InvalidField
            | ErrorCode::FrameTooLarge
            | ErrorCode::MessageTooLarge
            | ErrorCode::Unauthorized
            | ErrorCode::AuthFailed
            | ErrorCode::TlsRequired
            | ErrorCode::KeyExpired
            | ErrorCode::ModeNotAllowed
            | ErrorCode::ModeMismatch
            | ErrorCode::IdMismatch
            | ErrorCode::NotAnEnvelope
            | ErrorCode::UnknownRecipient
            | ErrorCode::NotFound
            | ErrorCode::NoPrekeys
            | ErrorCode::NameTaken
            | ErrorCode::KeyTaken
            | ErrorCode::InvalidKey
            | ErrorCode::InvalidSignature
            | ErrorCode::RequestTimeout
            | ErrorCode::RateLimited
            | ErrorCode::InboxFull
            | ErrorCode::Unavailable
            | ErrorCode::Internal => ErrorCode::ALL.iter().position(|x| *x == c),
        };
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for c in ErrorCode::ALL {
            assert!(position(c).is_some());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 26);
    }
}
