//! The WebSocket messages, in their JSON text form.
//!
//! Client → relay: `hello`, `auth`, `send_message`, `ack`, `read`, `fetch`, `key_exchange`,
//! `upload_prekeys`, `get_prekeys`, `get_contact`, `get_identity`.
//! Relay → client: `challenge`, `auth_ok`, `message`, `sent`, `key_exchange`,
//! `fetched`, `key_exchange_ok`, `prekeys_uploaded`, `prekey_bundle`, `contact`, `error`. The guide's frames parse exactly as written, e.g.
//! `{"type":"send_message","recipient":"user_42","message":"…","crypto_mode":"hybrid"}` and
//! `{"type":"key_exchange","crypto_mode":"hybrid"}`. Unknown fields are rejected, so a typo is
//! an error rather than a silently ignored option.

use nano_crypto::CryptoMode;
use serde::{Deserialize, Serialize};

use crate::MAX_IDS_PER_FRAME;
use crate::error::{ErrorCode, JsonFault, ProtoError};
use crate::payload::Payload;
use crate::types::{Bytes, MessageId, PrekeyCounts, Username};

/// A frame from a client to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Opens a login: the client's fresh nonce, and the mode of the relay key that is to sign
    /// the `challenge` (PROTOCOL.md §12).
    Hello {
        /// The mode of the relay's signature key that signs the answer.
        crypto_mode: CryptoMode,
        /// 32 fresh random bytes.
        nonce: Bytes,
    },
    /// Answer to `challenge`: a signature over [`crate::signed::auth_content`] (relay id, both
    /// nonces, channel binding, username) by `username`'s key for `crypto_mode`.
    Auth {
        /// Who is authenticating.
        username: Username,
        /// Which of the user's keys signed.
        crypto_mode: CryptoMode,
        /// The signature (raw encoding of that mode).
        signature: Bytes,
    },
    /// Store and forward `message` (opaque to the relay: a sealed envelope or session payload).
    SendMessage {
        /// The recipient.
        recipient: Username,
        /// The payload (base64 in JSON, raw in binary frames).
        message: Payload,
        /// The suite the payload was sealed with.
        crypto_mode: CryptoMode,
        /// The sender's message id; the relay assigns one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<MessageId>,
    },
    /// Remove delivered messages from the inbox.
    Ack {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Mark messages read.
    Read {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Ask for pending messages after inbox sequence `after`, at most `limit`.
    Fetch {
        /// Exclusive lower bound on the inbox sequence number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Page size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Without `ciphertext`: ask for the relay's ephemeral KEM key for `crypto_mode`. With
    /// `key_id` and `ciphertext`: the encapsulation to that key, completing the exchange.
    KeyExchange {
        /// The suite.
        crypto_mode: CryptoMode,
        /// The relay key the ciphertext is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<u64>,
        /// The client's encapsulation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ciphertext: Option<Bytes>,
    },
    /// Publish the authenticated user's prekeys for `crypto_mode` (PROTOCOL.md §14.13): a new
    /// signed-prekeys record, or one with the batch of one-time prekeys its root covers. The
    /// record is signed by the user's identity key of that mode; the relay checks the
    /// signature, the root and every key before storing.
    UploadPrekeys {
        /// The mode of every record.
        crypto_mode: CryptoMode,
        /// A signed-prekeys record (`SignedPrekeys::to_bytes`), replacing the served one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_prekeys: Option<Bytes>,
        /// One-time prekeys (`OneTimePrekey::to_bytes`), one batch in leaf order, at most
        /// [`MAX_PREKEYS_PER_UPLOAD`]; they need `signed_prekeys`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        one_time_prekeys: Vec<Bytes>,
        /// Whether the one-time prekeys of the mode held so far are deleted first (in the
        /// same transaction): a device that lost their secrets (a fresh home, a restored
        /// backup) starts over, so no contact is handed one it cannot answer.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace_one_time: bool,
    },
    /// Ask for `username`'s prekey bundle of `crypto_mode`, to start a session: the relay hands
    /// out one of the user's one-time prekeys (each at most once) while some are left and the
    /// requester is within its claim rate, else the bundle without one.
    GetPrekeys {
        /// Whose bundle.
        username: Username,
        /// Which mode.
        crypto_mode: CryptoMode,
    },
    /// `get_prekeys` for a first message to a contact whose identity bundle the client does
    /// not hold: answered with `contact`, the identity bundle beside the prekey bundle, so the
    /// first message costs one round trip on this connection (PROTOCOL.md §14.13).
    GetContact {
        /// Whose bundles.
        username: Username,
        /// Which mode.
        crypto_mode: CryptoMode,
    },
    /// Ask for `username`'s identity bundle as registered (the bytes `GET /v1/users/{name}`
    /// serves), answered with `identity_bundle`: a receiver learns a new sender's keys on this
    /// connection rather than over a new HTTP connection (PROTOCOL.md §14.13, "Receiving").
    GetIdentity {
        /// Whose identity bundle.
        username: Username,
    },
}

/// A frame from the relay to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayFrame {
    /// Answer to `hello`: the relay's nonce and its proof of identity, bound to the client's
    /// nonce and this connection. Sign it (with `auth`) to authenticate.
    Challenge {
        /// 32 random bytes, valid for one `auth` on this connection.
        nonce: Bytes,
        /// The relay's identity fingerprint (hex).
        relay_id: String,
        /// The mode of the relay key that signed (the one `hello` asked for).
        crypto_mode: CryptoMode,
        /// The channel binding the relay saw on this connection.
        channel_binding: crate::BindingKind,
        /// Relay signature (context `relay-challenge`) over
        /// [`crate::signed::challenge_content`].
        signature: Bytes,
    },
    /// Authentication succeeded.
    AuthOk {
        /// The authenticated user.
        username: Username,
        /// Messages waiting in the inbox.
        pending: u64,
        /// One-time prekeys the user has left per mode; absent until the user has published
        /// signed prekeys.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        one_time_prekeys: Option<PrekeyCounts>,
    },
    /// A delivered message.
    Message {
        /// The sender's message id.
        id: MessageId,
        /// Position in the recipient's inbox (for `fetch`).
        seq: u64,
        /// The authenticated sender, absent for anonymous sends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender: Option<Username>,
        /// The suite.
        crypto_mode: CryptoMode,
        /// When the relay accepted it, milliseconds since the Unix epoch.
        timestamp_ms: u64,
        /// The payload, as sent.
        message: Payload,
    },
    /// The message is durably stored.
    Sent {
        /// Its id.
        id: MessageId,
        /// True when this id had already been stored (the repeat was not stored again).
        duplicate: bool,
    },
    /// The relay's ephemeral KEM key for a mode, signed by the relay's identity key.
    KeyExchange {
        /// The suite.
        crypto_mode: CryptoMode,
        /// Identifies this key in the follow-up.
        key_id: u64,
        /// The KEM public key (raw encoding of the mode).
        public_key: Bytes,
        /// Relay signature (context `relay-key-exchange`) over
        /// [`crate::signed::key_exchange_content`].
        signature: Bytes,
        /// When the key stops being served, milliseconds since the Unix epoch (signed).
        expires_at_ms: u64,
    },
    /// The end of one page of inbox messages (after `auth` and after each `fetch`).
    Fetched {
        /// Messages in this page.
        count: u32,
        /// The last page message's sequence number (for the next `fetch`'s `after`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seq: Option<u64>,
        /// Whether more messages are waiting.
        more: bool,
    },
    /// The exchange completed: the relay decapsulated (PROTOCOL.md §12: a probe, no channel).
    KeyExchangeOk {
        /// The relay key used.
        key_id: u64,
        /// Proof the relay derived the same key (HMAC of a fixed label under the channel key).
        confirmation: Bytes,
    },
    /// Answer to `upload_prekeys`: stored.
    PrekeysUploaded {
        /// The mode uploaded.
        crypto_mode: CryptoMode,
        /// One-time prekeys the user now has in that mode.
        one_time_prekeys: u64,
    },
    /// Answer to `get_prekeys`: a prekey bundle (`PrekeyBundle::to_bytes`), as the relay
    /// stored it; the requester verifies every signature against the user's identity.
    PrekeyBundle {
        /// Whose bundle.
        username: Username,
        /// Its mode.
        crypto_mode: CryptoMode,
        /// The encoded bundle.
        bundle: Bytes,
    },
    /// Answer to `get_contact`: the user's identity bundle as registered (the bytes
    /// `GET /v1/users/{name}` serves) and, as for `get_prekeys`, a prekey bundle of the mode;
    /// no prekey bundle when the user has published none of the mode.
    Contact {
        /// Whose bundles (canonical name).
        username: Username,
        /// The prekey bundle's mode.
        crypto_mode: CryptoMode,
        /// The encoded identity bundle (PROTOCOL.md §4).
        identity: Bytes,
        /// The encoded prekey bundle, if the user has one of the mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<Bytes>,
    },
    /// Answer to `get_identity`: the user's identity bundle as registered.
    IdentityBundle {
        /// Whose bundle (canonical name).
        username: Username,
        /// The encoded identity bundle (PROTOCOL.md §4).
        bundle: Bytes,
    },
    /// Something went wrong; the connection stays open where it can.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable explanation (never echoes message content).
        message: String,
        /// The message the error concerns, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<MessageId>,
    },
}

const CLIENT_TYPES: [&str; 11] = [
    "hello",
    "auth",
    "send_message",
    "ack",
    "read",
    "fetch",
    "key_exchange",
    "upload_prekeys",
    "get_prekeys",
    "get_contact",
    "get_identity",
];
const RELAY_TYPES: [&str; 12] = [
    "challenge",
    "auth_ok",
    "message",
    "sent",
    "key_exchange",
    "fetched",
    "key_exchange_ok",
    "prekeys_uploaded",
    "prekey_bundle",
    "contact",
    "identity_bundle",
    "error",
];

/// Largest `fetch` page.
pub const MAX_FETCH_LIMIT: u32 = 500;
/// Largest integer a JavaScript client reads exactly (2^53 − 1): the bound on `key_id`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Longest `error` message, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Length of `hello.nonce` and `challenge.nonce`, in bytes.
pub const NONCE_LEN: usize = 32;
/// Most one-time prekeys one `upload_prekeys` carries: one batch, whose proofs are then at most
/// 5 hashes (160 bytes) long.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 25;

#[derive(Deserialize)]
struct TypeProbe {
    #[serde(rename = "type")]
    ty: Option<serde_json::Value>,
}

/// Turns a serde failure into a typed error without echoing the input.
fn classify(text: &str, err: &serde_json::Error, known: &[&str]) -> ProtoError {
    let shape = match JsonFault::of(err) {
        JsonFault::Syntax(m) => return ProtoError::Malformed(m),
        JsonFault::Shape(m) => m,
    };
    match serde_json::from_str::<TypeProbe>(text) {
        Err(_) => ProtoError::Malformed("a frame must be a JSON object".into()),
        Ok(TypeProbe { ty: None }) => ProtoError::field("type", missing_type_hint(text)),
        Ok(TypeProbe {
            ty: Some(serde_json::Value::String(t)),
        }) if !known.contains(&t.as_str()) => {
            // Named back only when it looks like a type name: never control characters or
            // arbitrary peer text in errors and logs.
            let plain =
                (1..=32).contains(&t.len()) && t.bytes().all(|b| matches!(b, b'a'..=b'z' | b'_'));
            ProtoError::UnknownType(if plain { t } else { "(not a type name)".into() })
        }
        Ok(TypeProbe {
            ty: Some(serde_json::Value::String(_)),
        }) => ProtoError::field("frame", shape),
        Ok(_) => ProtoError::field("type", "must be a string"),
    }
}

/// What to say about a JSON object without `type`: a frame wrapped in another object (as load
/// tools do with `{"payload": "<the frame as a string>"}`) gets told what was expected instead.
fn missing_type_hint(text: &str) -> String {
    let wrapped = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .ok()
        .and_then(|m| {
            m.iter().find_map(|(k, v)| {
                let inner = v.as_str()?;
                let probe = serde_json::from_str::<TypeProbe>(inner).ok()?;
                probe.ty.is_some().then(|| k.clone())
            })
        });
    match wrapped {
        // The key is named back only when it looks like a field name.
        Some(k)
            if (1..=32).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            format!(
                "missing: the frame arrived wrapped, as a string in field {k:?}; send the frame's JSON \
             object itself, e.g. {{\"type\":\"send_message\",...}}"
            )
        }
        Some(_) => "missing: the frame arrived wrapped, as a string inside another object; send \
                    the frame's JSON object itself, e.g. {\"type\":\"send_message\",...}"
            .into(),
        None => "missing".into(),
    }
}

fn check_ids(ids: &[MessageId]) -> Result<(), ProtoError> {
    if ids.is_empty() || ids.len() > MAX_IDS_PER_FRAME {
        return Err(ProtoError::field("ids", "must list 1 to 1024 message ids"));
    }
    Ok(())
}

fn check_bytes(field: &'static str, b: &Bytes) -> Result<(), ProtoError> {
    if b.as_slice().len() > crate::MAX_FIELD_BYTES {
        return Err(ProtoError::field(field, "longer than the field limit"));
    }
    Ok(())
}

fn check_nonce(nonce: &Bytes) -> Result<(), ProtoError> {
    if nonce.as_slice().len() != NONCE_LEN {
        return Err(ProtoError::field("nonce", "must be 32 bytes"));
    }
    Ok(())
}

fn check_key_id(id: u64) -> Result<(), ProtoError> {
    if id > MAX_SAFE_INTEGER {
        return Err(ProtoError::field("key_id", "must be at most 2^53 - 1"));
    }
    Ok(())
}

impl ClientFrame {
    /// The frame's `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Auth { .. } => "auth",
            Self::SendMessage { .. } => "send_message",
            Self::Ack { .. } => "ack",
            Self::Read { .. } => "read",
            Self::Fetch { .. } => "fetch",
            Self::KeyExchange { .. } => "key_exchange",
            Self::UploadPrekeys { .. } => "upload_prekeys",
            Self::GetPrekeys { .. } => "get_prekeys",
            Self::GetContact { .. } => "get_contact",
            Self::GetIdentity { .. } => "get_identity",
        }
    }

    /// Checks the rules the schema alone cannot express (counts, sizes, field combinations).
    pub fn validate(&self) -> Result<(), ProtoError> {
        match self {
            Self::SendMessage { message, .. } => message.check(),
            Self::Ack { ids } | Self::Read { ids } => check_ids(ids),
            Self::Fetch { limit: Some(l), .. } if *l == 0 || *l > MAX_FETCH_LIMIT => {
                Err(ProtoError::field("limit", "must be 1 to 500"))
            }
            Self::KeyExchange {
                key_id, ciphertext, ..
            } => {
                if key_id.is_some() != ciphertext.is_some() {
                    return Err(ProtoError::field(
                        "ciphertext",
                        "key_id and ciphertext go together",
                    ));
                }
                check_key_id(key_id.unwrap_or(0))?;
                ciphertext
                    .as_ref()
                    .map_or(Ok(()), |c| check_bytes("ciphertext", c))
            }
            Self::Auth { signature, .. } => check_bytes("signature", signature),
            Self::Hello { nonce, .. } => check_nonce(nonce),
            Self::UploadPrekeys {
                signed_prekeys,
                one_time_prekeys,
                replace_one_time,
                ..
            } => {
                if signed_prekeys.is_none() && one_time_prekeys.is_empty() && !replace_one_time {
                    return Err(ProtoError::field(
                        "one_time_prekeys",
                        "an upload carries signed prekeys, one-time prekeys or both, or replaces the one-time prekeys",
                    ));
                }
                if one_time_prekeys.len() > MAX_PREKEYS_PER_UPLOAD {
                    return Err(ProtoError::field(
                        "one_time_prekeys",
                        "at most 25 one-time prekeys per upload",
                    ));
                }
                if let Some(s) = signed_prekeys {
                    check_bytes("signed_prekeys", s)?;
                }
                one_time_prekeys
                    .iter()
                    .try_for_each(|p| check_bytes("one_time_prekeys", p))
            }
            _ => Ok(()),
        }
    }

    /// Parses and validates a JSON text frame.
    pub fn from_json(text: &str) -> Result<Self, ProtoError> {
        let f: Self = serde_json::from_str(text).map_err(|e| classify(text, &e, &CLIENT_TYPES))?;
        f.validate()?;
        Ok(f)
    }

    /// The JSON text form of a valid frame.
    pub fn to_json(&self) -> Result<String, ProtoError> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| ProtoError::Malformed(e.to_string()))
    }
}

impl RelayFrame {
    /// The frame's `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Challenge { .. } => "challenge",
            Self::AuthOk { .. } => "auth_ok",
            Self::Message { .. } => "message",
            Self::Sent { .. } => "sent",
            Self::KeyExchange { .. } => "key_exchange",
            Self::Fetched { .. } => "fetched",
            Self::KeyExchangeOk { .. } => "key_exchange_ok",
            Self::PrekeysUploaded { .. } => "prekeys_uploaded",
            Self::PrekeyBundle { .. } => "prekey_bundle",
            Self::Contact { .. } => "contact",
            Self::IdentityBundle { .. } => "identity_bundle",
            Self::Error { .. } => "error",
        }
    }

    /// An `error` frame for `err`.
    pub fn error(err: &ProtoError, id: Option<MessageId>) -> Self {
        Self::error_with(err.code(), err.to_string(), id)
    }

    /// An `error` frame with `code` and `message`, the message cut to
    /// [`MAX_ERROR_MESSAGE_BYTES`] at a character boundary.
    pub fn error_with(code: ErrorCode, mut message: String, id: Option<MessageId>) -> Self {
        while message.len() > MAX_ERROR_MESSAGE_BYTES {
            message.pop();
        }
        Self::Error { code, message, id }
    }

    /// Checks size and format rules (the same for both encodings).
    pub fn validate(&self) -> Result<(), ProtoError> {
        match self {
            Self::Message { message, .. } => message.check(),
            Self::Challenge {
                nonce,
                relay_id,
                signature,
                ..
            } => {
                check_nonce(nonce)?;
                check_bytes("signature", signature)?;
                if relay_id.len() != 64
                    || !relay_id
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(ProtoError::field(
                        "relay_id",
                        "must be 64 lowercase hex digits",
                    ));
                }
                Ok(())
            }
            Self::KeyExchange {
                key_id,
                public_key,
                signature,
                ..
            } => {
                check_key_id(*key_id)?;
                check_bytes("public_key", public_key)?;
                check_bytes("signature", signature)
            }
            Self::KeyExchangeOk {
                key_id,
                confirmation,
            } => {
                check_key_id(*key_id)?;
                check_bytes("confirmation", confirmation)
            }
            Self::PrekeyBundle { bundle, .. } => check_bytes("bundle", bundle),
            Self::Contact {
                identity, bundle, ..
            } => {
                check_bytes("identity", identity)?;
                bundle.as_ref().map_or(Ok(()), |b| check_bytes("bundle", b))
            }
            Self::IdentityBundle { bundle, .. } => check_bytes("bundle", bundle),
            Self::Error { message, .. } if message.len() > MAX_ERROR_MESSAGE_BYTES => {
                Err(ProtoError::field("message", "longer than 1024 bytes"))
            }
            _ => Ok(()),
        }
    }

    /// Appends the JSON text form of a valid frame to `out` (a reused buffer).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        self.validate()?;
        serde_json::to_writer(out, self).map_err(|e| ProtoError::Malformed(e.to_string()))
    }

    /// Parses and validates a JSON text frame.
    pub fn from_json(text: &str) -> Result<Self, ProtoError> {
        let f: Self = serde_json::from_str(text).map_err(|e| classify(text, &e, &RELAY_TYPES))?;
        f.validate()?;
        Ok(f)
    }

    /// The JSON text form of a valid frame.
    pub fn to_json(&self) -> Result<String, ProtoError> {
        self.validate()?;
        serde_json::to_string(self).map_err(|e| ProtoError::Malformed(e.to_string()))
    }
}
