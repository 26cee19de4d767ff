//! The `message` of `send_message` and `message` frames: the payload bytes a relay stores and
//! forwards without reading them (PROTOCOL.md §11, §12 step 5).
//!
//! A payload is a sealed envelope (§6), a session handshake or session message (§14.6), a
//! session notice (§14.14), or, on
//! development relays only, anything else ("opaque"). Binary frames carry its raw bytes; JSON
//! frames carry standard padded base64. A JSON string that is not base64 is the UTF-8 text of an
//! opaque payload (the performance guide's load test sends plain text), and such a payload is
//! delivered as base64 like any other.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::ProtoError;
use crate::types::MessageId;

/// Largest payload, in bytes: the larger of the largest sealed envelope
/// ([`nano_crypto::envelope::MAX_ENVELOPE_LEN`]) and the largest session payload
/// ([`nano_crypto::session::MAX_PAYLOAD_LEN`]). A relay's `limits.max_message_bytes` may only
/// be smaller.
pub const MAX_MESSAGE_BYTES: usize = {
    let e = nano_crypto::envelope::MAX_ENVELOPE_LEN;
    let s = nano_crypto::session::MAX_PAYLOAD_LEN;
    if e > s { e } else { s }
};

/// Longest JSON `message` string: the base64 of [`MAX_MESSAGE_BYTES`].
pub const MAX_MESSAGE_JSON_LEN: usize = crate::base64_len(MAX_MESSAGE_BYTES);

/// Domain separation of [`Payload::session_message_id`].
const MESSAGE_ID_LABEL: &[u8] = b"nano-messenger/v1 message-id";

/// A message payload: at most [`MAX_MESSAGE_BYTES`] bytes. `Debug` shows the length only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Vec<u8>);

/// What a payload is, read from its clear header (not verified: the relay holds no key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadKind {
    /// A sealed envelope (§6): its id is the header's `message_id`, its mode the mode byte.
    Sealed {
        /// The header's `message_id`.
        id: MessageId,
        /// The header's mode.
        mode: nano_crypto::CryptoMode,
    },
    /// A session handshake or message (§14.6): its id is [`Payload::session_message_id`].
    Session {
        /// The mode byte.
        mode: nano_crypto::CryptoMode,
    },
    /// A session notice (PROTOCOL.md §14.14): `0x04`, a mode byte and a sealed envelope of that
    /// mode, whose header's `message_id` is its id.
    Notice {
        /// The envelope header's `message_id`.
        id: MessageId,
        /// The envelope header's mode.
        mode: nano_crypto::CryptoMode,
    },
    /// Anything else.
    Opaque,
}

impl Payload {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the payload is: a sealed envelope parsed with exact §6 lengths, a notice around
    /// one, a session payload whose header parses (`nano_crypto::session::payload_mode`), or
    /// opaque.
    pub fn kind(&self) -> PayloadKind {
        if let Ok(env) = nano_crypto::Envelope::from_bytes(&self.0) {
            let h = env.header();
            return PayloadKind::Sealed {
                id: MessageId(h.message_id),
                mode: h.mode,
            };
        }
        if let Some(Ok(env)) = crate::notice::unwrap(&self.0).map(nano_crypto::Envelope::from_bytes)
        {
            let h = env.header();
            return PayloadKind::Notice {
                id: MessageId(h.message_id),
                mode: h.mode,
            };
        }
        match nano_crypto::session::payload_mode(&self.0) {
            Ok(mode) => PayloadKind::Session { mode },
            Err(_) => PayloadKind::Opaque,
        }
    }

    /// The message id of a session payload, which carries none of its own: the first 16 bytes
    /// of SHA-256(`"nano-messenger/v1 message-id"` ‖ payload) (PROTOCOL.md §12 step 5). A
    /// resend of the same bytes has the same id, so the relay stores it once.
    pub fn session_message_id(&self) -> MessageId {
        session_message_id(&self.0)
    }

    /// Standard padded base64, the JSON form.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.0)
    }

    /// The payload of a JSON `message` string: its bytes if it is standard padded base64, else
    /// its UTF-8 text (an opaque payload).
    ///
    /// # Errors
    /// [`ProtoError::MessageTooLarge`] beyond [`MAX_MESSAGE_JSON_LEN`] characters or
    /// [`MAX_MESSAGE_BYTES`] bytes.
    pub fn from_json_str(s: &str) -> Result<Self, ProtoError> {
        if s.len() > MAX_MESSAGE_JSON_LEN {
            return Err(ProtoError::MessageTooLarge {
                max: MAX_MESSAGE_JSON_LEN,
                got: s.len(),
            });
        }
        let p = Self::from_json_text(s);
        p.check()?;
        Ok(p)
    }

    /// What a JSON `message` string means, without the size check: the bytes of standard
    /// padded base64, else the UTF-8 text.
    pub fn from_json_text(s: &str) -> Self {
        Self(B64.decode(s).unwrap_or_else(|_| s.as_bytes().to_vec()))
    }

    /// Checks the size limit.
    ///
    /// # Errors
    /// [`ProtoError::MessageTooLarge`] beyond [`MAX_MESSAGE_BYTES`].
    pub fn check(&self) -> Result<(), ProtoError> {
        if self.0.len() > MAX_MESSAGE_BYTES {
            return Err(ProtoError::MessageTooLarge {
                max: MAX_MESSAGE_BYTES,
                got: self.0.len(),
            });
        }
        Ok(())
    }
}

/// [`Payload::session_message_id`] of `payload`'s bytes, without copying them into a
/// [`Payload`].
pub fn session_message_id(payload: &[u8]) -> MessageId {
    let digest = Sha256::new()
        .chain_update(MESSAGE_ID_LABEL)
        .chain_update(payload)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    MessageId(id)
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for Payload {
    /// Length only: a payload is message content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Payload {
    /// Not size-checked here (a frame is bounded before it is parsed): frame validation
    /// refuses an oversized payload with its own code, `message_too_large`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from_json_text(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_base64_or_opaque_text() {
        assert_eq!(Payload::from_json_str("AQI="), Ok(Payload(vec![1, 2])));
        // Not base64 (no padding, bad characters): the text itself.
        for text in ["hello", "AQI", "Hello from user_1!", "", "a\0b"] {
            let want = if text.is_empty() {
                vec![]
            } else {
                text.as_bytes().to_vec()
            };
            assert_eq!(Payload::from_json_str(text), Ok(Payload(want)), "{text:?}");
        }
        // A text that happens to be base64 re-encodes to the same string.
        let p = Payload::from_json_str("test").unwrap();
        assert_eq!(p.to_base64(), "test");
    }

    #[test]
    fn limits_hold_in_both_forms() {
        let big = "A".repeat(MAX_MESSAGE_JSON_LEN + 4);
        assert!(matches!(
            Payload::from_json_str(&big),
            Err(ProtoError::MessageTooLarge { .. })
        ));
        assert!(Payload(vec![0; MAX_MESSAGE_BYTES]).check().is_ok());
        assert!(Payload(vec![0; MAX_MESSAGE_BYTES + 1]).check().is_err());
        assert_eq!(format!("{:?}", Payload(vec![7; 3])), "Payload(3 bytes)");
    }

    #[test]
    fn session_message_ids_are_pinned() {
        // PROTOCOL.md §12 step 5: the payload 03 02.
        let id = Payload(vec![3, 2]).session_message_id();
        assert_eq!(id.to_hex(), "25635a932a0a6874db7469c142adf59e");
        assert_ne!(id, Payload(vec![3, 3]).session_message_id());
    }
}
