//! Bodies of the relay's HTTP API (JSON).
//!
//! Key bundles travel as base64 of [`nano_crypto::PublicBundle::to_bytes`]; decoding one here
//! verifies every proof of possession, so a handler holding a [`RegisterRequest`] that passed
//! [`RegisterRequest::bundle`] holds a verified bundle.

use nano_crypto::{CryptoAcceleration, CryptoMode, PublicBundle, Signature};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, JsonFault, ProtoError};
use crate::types::{Bytes, Username};

/// An HTTP request body of type `T`: UTF-8 JSON, with unknown fields refused where `T` says so.
///
/// # Errors
/// `malformed_body` for a body that is not UTF-8 or not JSON; `invalid_field` (field `body`)
/// for JSON of the wrong shape. Messages never echo the body.
pub fn from_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ProtoError::MalformedBody("not UTF-8".into()))?;
    serde_json::from_str(text).map_err(|e| match JsonFault::of(&e) {
        JsonFault::Syntax(m) => ProtoError::MalformedBody(m),
        JsonFault::Shape(m) => ProtoError::field("body", m),
    })
}

/// `POST /v1/users`: claim `username` for `bundle`. `signature` is made with the bundle's key
/// for `crypto_mode` (context `proof-of-possession`) over the claim (see [`claim_content`]),
/// binding the name to the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The name to claim.
    pub username: Username,
    /// The public key bundle.
    pub bundle: Bytes,
    /// Which of the bundle's signature keys signed the claim.
    pub crypto_mode: CryptoMode,
    /// The claim signature.
    pub signature: Bytes,
}

/// `PUT /v1/users/{name}/keys`: replace the bundle. Signed over [`rotation_content`] (context
/// `key-rotation`) twice: by the *current* bundle's key for `crypto_mode`, and by the *new*
/// bundle's key for the same mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeysRequest {
    /// The new bundle.
    pub bundle: Bytes,
    /// Which key of each bundle signed.
    pub crypto_mode: CryptoMode,
    /// The user's rotations so far, as `GET /v1/users/{name}` gave it; must still be current.
    pub key_version: u64,
    /// The rotation signature by the current key.
    pub signature: Bytes,
    /// The same statement signed by the new key: its consent to this name.
    pub new_signature: Bytes,
}

/// `GET /v1/users/{name}` and the body of a successful registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserResponse {
    /// The name.
    pub username: Username,
    /// The bundle.
    pub bundle: Bytes,
    /// The bundle's fingerprint (hex).
    pub fingerprint: String,
    /// The weakest mode the user accepts.
    pub min_mode: CryptoMode,
    /// How many times the user's keys were rotated (0 after registration); a rotation names it.
    pub key_version: u64,
}

/// `GET /v1/relay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Relay software version.
    pub version: String,
    /// The relay's identity fingerprint (hex); clients pin it.
    pub relay_id: String,
    /// The relay's public bundle (its signature keys sign challenges and `key_exchange` keys).
    pub identity: Bytes,
    /// The WebSocket URL clients should use.
    pub websocket_url: String,
    /// Modes the relay accepts.
    pub modes: Vec<CryptoMode>,
    /// The relay's policy floor.
    pub minimum_crypto_mode: CryptoMode,
    /// Whether unauthenticated `send_message` is accepted (test traffic: such a message has no
    /// sender and cannot be verified).
    pub allow_anonymous_send: bool,
    /// Whether `send_message` payloads that are not sealed envelopes are accepted (test
    /// traffic).
    pub allow_opaque_payloads: bool,
    /// The largest `send_message.message` accepted, in bytes (at most
    /// [`crate::MAX_MESSAGE_BYTES`]); [`crate::max_plaintext_len`] turns it into the largest
    /// plaintext per mode.
    pub max_message_bytes: usize,
    /// Detected CPU acceleration.
    pub acceleration: CryptoAcceleration,
}

/// Every HTTP error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl From<&ProtoError> for ErrorBody {
    fn from(e: &ProtoError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

pub use crate::signed::{claim_content, rotation_content};

fn decode_bundle(b: &Bytes) -> Result<PublicBundle, ProtoError> {
    Ok(PublicBundle::from_bytes(b.as_slice())?)
}

fn decode_signature(mode: CryptoMode, b: &Bytes) -> Result<Signature, ProtoError> {
    Signature::from_bytes(mode, b.as_slice()).map_err(ProtoError::Signature)
}

impl RegisterRequest {
    /// The decoded, proof-checked bundle.
    pub fn bundle(&self) -> Result<PublicBundle, ProtoError> {
        decode_bundle(&self.bundle)
    }

    /// The claim signature, length-checked for its mode.
    pub fn signature(&self) -> Result<Signature, ProtoError> {
        decode_signature(self.crypto_mode, &self.signature)
    }
}

impl RotateKeysRequest {
    /// The decoded, proof-checked new bundle.
    pub fn bundle(&self) -> Result<PublicBundle, ProtoError> {
        decode_bundle(&self.bundle)
    }

    /// The rotation signature by the current key, length-checked for its mode.
    pub fn signature(&self) -> Result<Signature, ProtoError> {
        decode_signature(self.crypto_mode, &self.signature)
    }

    /// The rotation signature by the new key, length-checked for its mode.
    pub fn new_signature(&self) -> Result<Signature, ProtoError> {
        decode_signature(self.crypto_mode, &self.new_signature)
    }
}
