//! The crate's one error type, and the single place its variants become wire codes.

use nano_proto::ErrorCode;

/// Everything that can go wrong in the relay's building blocks. Messages never contain user
/// content, key material or credentials.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// `relay.toml` is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{0}")]
    ConfigParse(String),
    /// A configuration value outside its range or combination; names the key.
    #[error("{key}: {reason}")]
    ConfigInvalid {
        /// The dotted key, e.g. `performance.message_batch_size`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The username is registered already.
    #[error("username is taken")]
    NameTaken,
    /// The bundle's fingerprint is registered to another name.
    #[error("this key bundle is registered to another name")]
    KeyTaken,
    /// The user does not exist.
    #[error("no such user")]
    NotFound,
    /// The stored bundle changed since it was read (a concurrent rotation), or a rotation
    /// names a key version that is no longer current (a spent or replayed statement).
    #[error("the key bundle changed since this rotation was signed (stale key_version)")]
    Conflict,
    /// The database reported an error.
    #[error("database error: {0}")]
    Storage(String),
    /// The database cannot be reached now (it is restarting or down); nothing was attempted.
    /// Retryable: the relay reconnects on its own.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// Stored data this build cannot read (a row that fails to decode, a column of another
    /// type): a permanent fault of the server, not a transient one. Names what is corrupt,
    /// never its content.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The schema is newer than this build understands.
    #[error("database schema version {found} is newer than supported {supported}")]
    SchemaTooNew {
        /// Version in the database.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// The L2 cache failed (callers fall back to the database).
    #[error("L2 cache unavailable: {0}")]
    Cache(String),
    /// A peer's frame or body could not be decoded or was invalid.
    #[error(transparent)]
    Proto(#[from] nano_proto::ProtoError),
    /// A crypto operation failed on a peer's input (bad key, bad signature, wrong mode).
    #[error("{0}")]
    Crypto(#[from] nano_crypto::CryptoError),
    /// The request needs an authenticated connection.
    #[error("authenticate first")]
    Unauthorized,
    /// Authentication failed: unknown user, mode not held, bad signature or a spent challenge.
    #[error("authentication failed")]
    AuthFailed,
    /// A login over a plain connection from a peer that is not on loopback.
    #[error(
        "logins need TLS (wss://) except from loopback, so they can be bound to the connection"
    )]
    TlsRequired,
    /// More `hello` frames on one connection than [`crate::protocol::login::MAX_LOGIN_ATTEMPTS`].
    #[error("too many logins on this connection; open a new one")]
    TooManyLogins,
    /// A `key_exchange` completion for a key past its `expires_at_ms`.
    #[error("this key_exchange key has expired; ask for a new one")]
    KeyExpired,
    /// The crypto mode is below the relay's or a user's floor.
    #[error("crypto mode {mode} is not allowed (minimum {floor})")]
    ModeNotAllowed {
        /// What was asked for.
        mode: nano_crypto::CryptoMode,
        /// The floor.
        floor: nano_crypto::CryptoMode,
    },
    /// A `send_message` labelled with a mode other than its envelope's.
    #[error("crypto_mode {label} differs from the envelope's mode {sealed}")]
    ModeMismatch {
        /// The frame's label.
        label: nano_crypto::CryptoMode,
        /// The mode byte of the envelope's header.
        sealed: nano_crypto::CryptoMode,
    },
    /// A `send_message` whose `id` differs from its envelope's `message_id`.
    #[error("id differs from the envelope's message_id")]
    IdMismatch,
    /// A `send_message` payload that is not a sealed envelope, on a relay that accepts only
    /// envelopes.
    #[error("message is not a sealed envelope (standard base64 of PROTOCOL.md §6 bytes)")]
    NotAnEnvelope,
    /// The recipient is not registered.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// The recipient's inbox holds its quota of undelivered messages.
    #[error("the recipient's inbox is full")]
    InboxFull,
    /// Too many requests from this connection or address.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The relay is draining or overloaded.
    #[error("the relay is shutting down or overloaded")]
    Unavailable,
    /// TLS setup failed (certificate or key unreadable or invalid).
    #[error("TLS: {0}")]
    Tls(String),
    /// An unexpected internal failure (details in the relay's logs only).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RelayError {
    /// The message a peer is told: our own failures are summarised, the peer's named.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Internal => "internal error".into(),
            ErrorCode::Unavailable => "the relay is temporarily unavailable".into(),
            _ => self.to_string(),
        }
    }

    /// Logs a failure of the relay's own (never a peer's mistake) before it is answered:
    /// permanent faults at ERROR, an unavailable dependency at WARN, each rate-limited per
    /// kind so an outage or a corrupt row costs a few lines, not one per request.
    pub fn report(&self) {
        match self {
            Self::Corrupt(_) => crate::telemetry::log_limit::error("corrupt stored data", self),
            Self::Internal(_) | Self::Io { .. } | Self::Tls(_) => {
                crate::telemetry::log_limit::error("internal error", self);
            }
            Self::Storage(_) | Self::Unreachable(_) | Self::SchemaTooNew { .. } => {
                crate::telemetry::log_limit::warn("database unavailable", self);
            }
            Self::Cache(_) => crate::telemetry::log_limit::warn("L2 cache unavailable", self),
            _ => {}
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            ErrorCode::NotFound | ErrorCode::UnknownRecipient => 404,
            ErrorCode::NameTaken | ErrorCode::KeyTaken => 409,
            ErrorCode::Unauthorized | ErrorCode::AuthFailed | ErrorCode::TlsRequired => 401,
            ErrorCode::InvalidKey | ErrorCode::InvalidSignature | ErrorCode::ModeNotAllowed => 403,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::RateLimited => 429,
            ErrorCode::FrameTooLarge | ErrorCode::MessageTooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            _ => 400,
        }
    }

    /// The wire code a peer is told (details stay in the relay's logs).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NameTaken => ErrorCode::NameTaken,
            Self::KeyTaken => ErrorCode::KeyTaken,
            Self::NotFound => ErrorCode::NotFound,
            // The key that signed the rotation is no longer the current one.
            Self::Conflict => ErrorCode::InvalidKey,
            Self::Storage(_)
            | Self::Unreachable(_)
            | Self::SchemaTooNew { .. }
            | Self::Cache(_)
            | Self::Unavailable => ErrorCode::Unavailable,
            Self::Proto(e) => e.code(),
            Self::Crypto(e) => nano_proto::ProtoError::Crypto(e.clone()).code(),
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::AuthFailed => ErrorCode::AuthFailed,
            Self::TlsRequired => ErrorCode::TlsRequired,
            Self::KeyExpired => ErrorCode::KeyExpired,
            Self::ModeNotAllowed { .. } => ErrorCode::ModeNotAllowed,
            Self::ModeMismatch { .. } => ErrorCode::ModeMismatch,
            Self::IdMismatch => ErrorCode::IdMismatch,
            Self::NotAnEnvelope => ErrorCode::NotAnEnvelope,
            Self::UnknownRecipient => ErrorCode::UnknownRecipient,
            Self::InboxFull => ErrorCode::InboxFull,
            Self::RateLimited | Self::TooManyLogins => ErrorCode::RateLimited,
            Self::ConfigParse(_)
            | Self::ConfigInvalid { .. }
            | Self::Io { .. }
            | Self::Tls(_)
            | Self::Corrupt(_)
            | Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(RelayError::NameTaken.code().as_str(), "name_taken");
        assert_eq!(RelayError::NotFound.code().as_str(), "not_found");
        assert_eq!(RelayError::Conflict.code().as_str(), "invalid_key");
        assert_eq!(
            RelayError::Storage("x".into()).code().as_str(),
            "unavailable"
        );
        assert_eq!(RelayError::Cache("x".into()).code().as_str(), "unavailable");
        assert_eq!(
            RelayError::ConfigParse("x".into()).code().as_str(),
            "internal"
        );
    }
}
