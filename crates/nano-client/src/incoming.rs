//! What a client's message stream yields: messages verified and decrypted, what could not be
//! verified or opened, notices of lost sessions, and the end of the backlog.

use nano_crypto::{CryptoMode, Fingerprint};
use nano_proto::MessageId;

use crate::error::ClientError;

/// A received, verified and decrypted message.
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// Its id.
    pub id: MessageId,
    /// The authenticated sender.
    pub sender: String,
    /// The sender's key fingerprint (as signed into the envelope).
    pub sender_fingerprint: Fingerprint,
    /// When the sender sealed it (sender's clock, ms since the epoch).
    pub sent_at_ms: u64,
    /// When the relay accepted it (ms since the epoch).
    pub timestamp_ms: u64,
    /// The suite.
    pub crypto_mode: CryptoMode,
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Whether it came on a session (false: a sealed envelope).
    pub session: bool,
}

/// The plaintext never reaches a log through `Debug`: only its length does.
impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("id", &self.id)
            .field("sender", &self.sender)
            .field("sender_fingerprint", &self.sender_fingerprint)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("crypto_mode", &self.crypto_mode)
            .field("plaintext_len", &self.plaintext.len())
            .field("session", &self.session)
            .finish()
    }
}

/// What the message stream yields.
#[derive(Debug)]
pub enum Incoming {
    /// A verified message.
    Message(Received),
    /// A payload that is not a sealed envelope, or an envelope without a sender to verify it
    /// against: test traffic a development relay accepts (`allow_opaque_payloads`,
    /// `allow_anonymous_send`; the guide's load test). Nothing about it is authenticated, so
    /// its content is not handed out; it is acknowledged like any message shown.
    Unverifiable {
        /// Its id.
        id: MessageId,
        /// The sender the relay names, if any.
        sender: Option<String>,
        /// What it is: [`Unverifiable`].
        what: Unverifiable,
        /// The payload's size as relayed (bytes).
        len: usize,
    },
    /// A message that failed verification or decryption, or whose sender's key is not trusted.
    Rejected {
        /// Its id.
        id: MessageId,
        /// The claimed sender.
        sender: Option<String>,
        /// Why.
        error: ClientError,
    },
    /// The inbox backlog has been delivered; later messages arrive as they are sent.
    UpToDate,
    /// A contact could not read a session message this client sent it (it lost its session
    /// state: a fresh home, a restored backup), and said so in a notice (PROTOCOL.md §14.14).
    /// The session is dropped; the next message to the contact starts a new one. The lost
    /// message is not resent: the application shows which one it was.
    SessionReset {
        /// The notice's id (acknowledge it like a message).
        id: MessageId,
        /// The contact.
        peer: String,
        /// The mode of the lost message's session.
        mode: CryptoMode,
        /// The id of the message the contact could not read.
        lost: MessageId,
    },
    /// A message delivered again after it was handed out (delivery is at least once: the
    /// relay pushes until an ack is applied). Not handed out twice; reported so an application
    /// or a test can count redeliveries.
    Redelivered {
        /// Its id.
        id: MessageId,
    },
}

/// Why a delivered payload cannot be verified (see [`Incoming::Unverifiable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverifiable {
    /// The payload is not standard base64 of a sealed envelope (PROTOCOL.md §6).
    NotAnEnvelope,
    /// An envelope sent anonymously: no sender whose bundle could verify it.
    Anonymous,
}

impl std::fmt::Display for Unverifiable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAnEnvelope => "not a sealed envelope",
            Self::Anonymous => "sent anonymously, so it cannot be verified",
        })
    }
}
