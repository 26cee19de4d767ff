//! The relay's two error types, and the one place a request's error becomes a wire code.
//!
//! - [`StartupError`]: the relay cannot start (configuration, files, TLS, the database). Only
//!   the operator sees these.
//! - [`RelayError`]: one request (a frame, an HTTP call) or a background task failed. Each has
//!   a stable wire code and HTTP status, given by [`RelayError::wire`] alone, for both the
//!   WebSocket and the HTTP API; callers count it in the metrics and report it.
//!
//! Messages never contain user content, key material or credentials.

use nano_crypto::session::SessionError;
use nano_proto::ErrorCode;

/// Why the relay cannot start. Messages name the key, file or service at fault.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
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
    /// A file could not be read or written.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// TLS setup failed (certificate or key unreadable or invalid).
    #[error("TLS: {0}")]
    Tls(String),
    /// A service the relay needs at startup failed (the database, its schema, the crypto pool).
    #[error(transparent)]
    Service(#[from] RelayError),
}

/// A failed request or background task, sorted by culprit: the peer (its frame, body, keys or
/// rate), the state of the directory, a dependency (database, cache), or the relay itself.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
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
    /// `get_prekeys` for a user without signed prekeys in that mode.
    #[error("this user has published no prekeys for this mode")]
    NoPrekeys,
    /// An uploaded prekey record that does not decode, is of another mode than the upload, or
    /// whose signature does not verify under the uploader's identity.
    #[error("prekey refused: {0}")]
    Prekey(nano_crypto::session::SessionError),
    /// The recipient's inbox holds its quota of undelivered messages.
    #[error("the recipient's inbox is full")]
    InboxFull,
    /// Too many requests from this connection or address.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The relay is draining or overloaded.
    #[error("the relay is shutting down or overloaded")]
    Unavailable,
    /// An HTTP request that did not complete within `server.request_timeout_seconds`.
    #[error("the request did not complete within {seconds} s")]
    RequestTimeout {
        /// The limit, in seconds.
        seconds: u64,
    },
    /// An HTTP request body over the API's limit.
    #[error("the request body exceeds {max} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// No API endpoint at this path.
    #[error("no such path")]
    NoRoute,
    /// An API path that exists, asked with another method.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
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
            Self::Internal(_) => {
                crate::telemetry::log_limit::error("internal error", self);
            }
            Self::Storage(_) | Self::Unreachable(_) | Self::SchemaTooNew { .. } => {
                crate::telemetry::log_limit::warn("database unavailable", self);
            }
            Self::Cache(_) => crate::telemetry::log_limit::warn("L2 cache unavailable", self),
            _ => {}
        }
    }

    /// The one mapping of a request error to the wire: its [`ErrorCode`] and HTTP status.
    /// Pure; the WebSocket path uses the code, the HTTP API both.
    pub fn wire(&self) -> Wire {
        use ErrorCode as C;
        let (code, http_status) = match self {
            // The peer: its frame or body, its keys, its rate.
            Self::Proto(e) => {
                let code = e.code();
                (code, status_of(code))
            }
            Self::Crypto(e) => {
                let code = nano_proto::ProtoError::Crypto(e.clone()).code();
                (code, status_of(code))
            }
            Self::Unauthorized => (C::Unauthorized, 401),
            Self::AuthFailed => (C::AuthFailed, 401),
            Self::TlsRequired => (C::TlsRequired, 401),
            Self::KeyExpired => (C::KeyExpired, 400),
            Self::ModeMismatch { .. } => (C::ModeMismatch, 400),
            Self::IdMismatch => (C::IdMismatch, 400),
            Self::NotAnEnvelope => (C::NotAnEnvelope, 400),
            Self::RateLimited | Self::TooManyLogins => (C::RateLimited, 429),
            Self::RequestTimeout { .. } => (C::RequestTimeout, 408),
            Self::BodyTooLarge { .. } => (C::FrameTooLarge, 413),
            Self::NoRoute => (C::NotFound, 404),
            Self::MethodNotAllowed => (C::InvalidField, 405),
            // The directory's state.
            Self::NameTaken => (C::NameTaken, 409),
            Self::KeyTaken => (C::KeyTaken, 409),
            Self::NotFound => (C::NotFound, 404),
            Self::UnknownRecipient => (C::UnknownRecipient, 404),
            Self::NoPrekeys => (C::NoPrekeys, 404),
            Self::Prekey(e) => match e {
                SessionError::BadPrekeySignature => (C::InvalidSignature, 403),
                SessionError::ModeMismatch { .. } => (C::ModeMismatch, 400),
                _ => (C::InvalidKey, 403),
            },
            Self::InboxFull => (C::InboxFull, 400),
            // The key that signed the rotation is no longer the current one.
            Self::Conflict => (C::InvalidKey, 403),
            // A dependency: temporary.
            Self::Storage(_)
            | Self::Unreachable(_)
            | Self::SchemaTooNew { .. }
            | Self::Cache(_)
            | Self::Unavailable => (C::Unavailable, 503),
            // The relay itself: permanent.
            Self::Corrupt(_) | Self::Internal(_) => (C::Internal, 500),
        };
        Wire { code, http_status }
    }

    /// The wire code a peer is told: [`RelayError::wire`]'s code.
    pub fn code(&self) -> ErrorCode {
        self.wire().code
    }

    /// Whether the HTTP connection must close after the answer (the rest of the request was
    /// never read).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::RequestTimeout { .. } | Self::BodyTooLarge { .. }
        )
    }
}

/// A request error as the wire states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// The stable code.
    pub code: ErrorCode,
    /// The HTTP status.
    pub http_status: u16,
}

/// The status of a decoding failure's code (the peer's input).
fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InvalidKey | ErrorCode::InvalidSignature | ErrorCode::ModeNotAllowed => 403,
        ErrorCode::FrameTooLarge | ErrorCode::MessageTooLarge => 413,
        ErrorCode::Internal => 500,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire() {
        let cases = [
            (RelayError::NameTaken, "name_taken", 409),
            (RelayError::NotFound, "not_found", 404),
            (RelayError::NoPrekeys, "no_prekeys", 404),
            (
                RelayError::Prekey(SessionError::BadPrekeySignature),
                "invalid_signature",
                403,
            ),
            (
                RelayError::Prekey(SessionError::ModeMismatch {
                    expected: nano_crypto::CryptoMode::Hybrid,
                    got: nano_crypto::CryptoMode::Classical,
                }),
                "mode_mismatch",
                400,
            ),
            (
                RelayError::Prekey(SessionError::Malformed(
                    nano_crypto::CryptoError::InvalidKey("x"),
                )),
                "invalid_key",
                403,
            ),
            (RelayError::NoRoute, "not_found", 404),
            (RelayError::Conflict, "invalid_key", 403),
            (RelayError::MethodNotAllowed, "invalid_field", 405),
            (
                RelayError::RequestTimeout { seconds: 5 },
                "request_timeout",
                408,
            ),
            (RelayError::BodyTooLarge { max: 1 }, "frame_too_large", 413),
            (RelayError::Storage("x".into()), "unavailable", 503),
            (RelayError::Cache("x".into()), "unavailable", 503),
            (RelayError::Corrupt("x".into()), "internal", 500),
            (RelayError::TooManyLogins, "rate_limited", 429),
            (
                RelayError::Proto(nano_proto::ProtoError::Malformed("x".into())),
                "malformed_frame",
                400,
            ),
            (
                RelayError::Crypto(nano_crypto::CryptoError::BadSignature),
                "invalid_signature",
                403,
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.wire().code.as_str(), code, "{e:?}");
            assert_eq!(e.wire().http_status, status, "{e:?}");
        }
        assert_eq!(
            RelayError::Internal("detail".into()).public_message(),
            "internal error"
        );
    }
}
