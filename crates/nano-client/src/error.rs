//! The crate's one error type. Each message says what happened and, where the user can act,
//! what to do; none contains a passphrase, key material or message content.

use nano_proto::ErrorCode;

/// Everything the SDK and the CLI can fail with.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No keystore in the home directory.
    #[error("no identity in {0}: run `nano-client init` first (or pass --home)")]
    NoHome(String),
    /// A keystore exists already.
    #[error("{0} already holds an identity; use another --home to create a second one")]
    HomeExists(String),
    /// The passphrase does not open the keystore.
    #[error("wrong passphrase (or a damaged keystore)")]
    WrongPassphrase,
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The relay could not be reached.
    #[error("cannot reach the relay at {url}: {reason} (is it running? check --relay)")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// The relay's TLS certificate was refused (not issued by a trusted CA, or for another
    /// name): not retried.
    #[error(
        "cannot reach the relay at {url} securely: {reason} (an https:// relay with a private or \
         self-signed certificate needs `nano-client init --relay-ca FILE`)"
    )]
    Tls {
        /// The URL tried.
        url: String,
        /// What rustls said.
        reason: String,
    },
    /// The relay answered with an error.
    #[error("the relay refused: {message} ({code}){}", hint(*code))]
    Relay {
        /// Stable code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The recipient is not registered.
    #[error("no user named {0} on this relay: check the name")]
    UnknownUser(String),
    /// The relay's identity differs from the pinned one.
    #[error(
        "the relay's identity changed (pinned {pinned}, now {now}): this may be an attack; \
         if the relay was deliberately re-keyed, run `nano-client init` again in a new home"
    )]
    RelayIdentityChanged {
        /// Pinned fingerprint.
        pinned: String,
        /// Served fingerprint.
        now: String,
    },
    /// The relay did not prove its identity on this connection (its `challenge` signature is
    /// missing, invalid or bound to another connection). Nothing was signed.
    #[error(
        "the relay did not prove its identity on this connection ({0}): this may be an attack; \
         nothing was signed"
    )]
    RelayNotAuthenticated(String),
    /// A plain-text relay URL off this machine.
    #[error(
        "refusing {url}: a relay on another machine must be reached over TLS (https:// and wss://)"
    )]
    InsecureTransport {
        /// The URL.
        url: String,
    },
    /// A contact's key differs from the pinned one.
    #[error(
        "the key of {name} changed (pinned {pinned}, now {now}): verify the new fingerprint with \
         {name}, then run `nano-client contacts trust {name} --fingerprint <the fingerprint {name} gave you>`"
    )]
    ContactKeyChanged {
        /// The contact.
        name: String,
        /// Pinned fingerprint.
        pinned: String,
        /// Served fingerprint.
        now: String,
    },
    /// A received message failed verification or decryption.
    #[error("rejected a message from {sender}: {reason}")]
    Rejected {
        /// Claimed sender.
        sender: String,
        /// Why (signature, decryption, addressing).
        reason: String,
    },
    /// A session message on a session this side does not hold (a fresh home, a restored
    /// backup): it cannot be read, and the sender's next message starts a new session.
    #[error(
        "session_unknown: a {mode} session message from {sender} on a session this device does not hold; the message cannot be read"
    )]
    SessionUnknown {
        /// The sender.
        sender: String,
        /// The session's mode.
        mode: nano_crypto::CryptoMode,
    },
    /// A message too large to send in its mode through this relay, refused before sealing.
    #[error(
        "the message is {size} bytes; the largest that fits in a {mode} envelope on this relay \
         is {largest} bytes"
    )]
    MessageTooLarge {
        /// The plaintext's size (bytes).
        size: usize,
        /// The largest plaintext that fits (bytes): [`nano_proto::max_plaintext_len`].
        largest: usize,
        /// The mode it would have been sealed in.
        mode: nano_crypto::CryptoMode,
    },
    /// No mode both parties and the relay accept.
    #[error("no crypto mode that you, {0} and the relay all accept")]
    NoCommonMode(String),
    /// A bad argument or value.
    #[error("{0}")]
    Invalid(String),
    /// Input that breaks a rule of the protocol (a name, a frame, a field); keeps its wire code
    /// (`ProtoError::code`).
    #[error(transparent)]
    Proto(#[from] nano_proto::ProtoError),
    /// A protocol violation by the relay.
    #[error("unexpected answer from the relay: {0}")]
    Protocol(String),
    /// The connection task stopped.
    #[error("the connection to the relay was closed")]
    Closed,
    /// A timeout.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// A crypto failure on our side.
    #[error("crypto error: {0}")]
    Crypto(#[from] nano_crypto::CryptoError),
}

/// What a user can do about a relay's error code, where there is something to say.
fn hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Internal => {
            "; this is a fault on the relay's side that retrying will not fix: tell its operator"
        }
        ErrorCode::Unavailable => "; the relay or its database is restarting: try again shortly",
        _ => "",
    }
}

impl ClientError {
    /// Whether the same request may succeed if made again shortly: the relay is unreachable,
    /// timed out, or answered `unavailable` or `rate_limited`. Permanent answers (`internal`,
    /// a refused key, an unknown user) are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout(_)
                | Self::Relay {
                    code: ErrorCode::Unavailable | ErrorCode::RateLimited,
                    ..
                }
        )
    }

    /// Whether a login failed for a reason that will not go away by itself: the relay refused
    /// us (other than for now), its certificate was refused, its identity changed, or it did
    /// not prove its identity. The connection task stops instead of retrying.
    pub fn is_permanent_refusal(&self) -> bool {
        match self {
            Self::Relay { .. } => !self.is_retryable(),
            Self::Tls { .. }
            | Self::RelayIdentityChanged { .. }
            | Self::RelayNotAuthenticated(_) => true,
            _ => false,
        }
    }
}

/// Shorthand.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}
