//! Validated value types shared by frames and REST bodies.
//!
//! Each type checks its invariants when built or deserialized, so code holding one never has to
//! re-check: a `Username` is always a valid name, a `MessageId` always 16 bytes.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProtoError;

/// Longest username in bytes.
pub const MAX_USERNAME_LEN: usize = 64;

/// A username: 1–64 bytes of ASCII letters, digits, `_`, `-` and `.`, starting with a letter or
/// digit. Names are an index for routing, so the alphabet is small on purpose: no look-alike
/// Unicode, no separators that could confuse logs or URLs.
///
/// **Case-insensitive**: a name is held in its canonical form, ASCII lowercase, from the moment
/// it is parsed (`Alice`, `ALICE` and `alice` are one name, `alice`), and every signed
/// statement, lookup and stored row uses that form. Names that still look alike in that form
/// (`a1ice` and `alice`, `rn` and `m`) share a [`Username::skeleton`], and a relay registers at
/// most one name per skeleton (PROTOCOL.md §11).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if s.is_empty() || s.len() > MAX_USERNAME_LEN {
            return Err(ProtoError::field("username", "must be 1 to 64 characters"));
        }
        if !first_ok
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(ProtoError::field(
                "username",
                "only letters, digits, '_', '-', '.', starting with a letter or digit",
            ));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The name, in canonical (lowercase) form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The look-alike key of the name: the UTS #39 confusable skeleton (Unicode Technical
    /// Standard #39 §4, via `unicode-security`) of the canonical name, lowercased. Two names
    /// with the same skeleton look alike (`a1ice`, `alice` → `alice`; `rn`, `m` → `rn`).
    pub fn skeleton(&self) -> String {
        unicode_security::confusable_detection::skeleton(&self.0)
            .collect::<String>()
            .to_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(D::Error::custom)
    }
}

/// A message id: 16 bytes, lowercase hex (32 characters) in JSON. Chosen by the sender (random),
/// it is what the relay deduplicates on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses exactly 32 lowercase hex digits (the one canonical form).
    pub fn from_hex(s: &str) -> Result<Self, ProtoError> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ProtoError::field("id", "must be 32 lowercase hex digits"));
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).unwrap_or("");
            *o = u8::from_str_radix(pair, 16)
                .map_err(|_| ProtoError::field("id", "must be 32 hex digits"))?;
        }
        Ok(Self(out))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).map_err(D::Error::custom)
    }
}

/// Opaque bytes (keys, signatures, nonces, ciphertexts): standard base64 with padding in JSON,
/// at most [`crate::MAX_FIELD_BYTES`] decoded.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Standard base64.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.0)
    }

    /// Decodes standard base64, bounded.
    pub fn from_base64(s: &str) -> Result<Self, ProtoError> {
        if s.len() > crate::MAX_FIELD_BYTES.div_ceil(3) * 4 {
            return Err(ProtoError::field("bytes", "longer than the field limit"));
        }
        let v = B64
            .decode(s)
            .map_err(|_| ProtoError::field("bytes", "not valid base64"))?;
        if v.len() > crate::MAX_FIELD_BYTES {
            return Err(ProtoError::field("bytes", "longer than the field limit"));
        }
        Ok(Self(v))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for Bytes {
    /// Length only: these fields carry keys, signatures and ciphertexts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_base64(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["user_42", "a", "Alice.B-c", &"x".repeat(64)] {
            assert_eq!(
                Username::new(ok).map(|u| u.as_str().to_owned()),
                Ok(ok.to_ascii_lowercase())
            );
        }
        for bad in [
            "",
            "_lead",
            "-x",
            ".x",
            "has space",
            "é",
            "a/b",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(Username::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn message_ids() {
        let id = MessageId([0xab; 16]);
        assert_eq!(MessageId::from_hex(&id.to_hex()), Ok(id));
        assert!(MessageId::from_hex(&id.to_hex().to_uppercase()).is_err());
        for bad in [
            "",
            "ab",
            "+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a",
            &"g".repeat(32),
            &"a".repeat(33),
            "ééééééééééééééééé",
        ] {
            assert!(MessageId::from_hex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bytes_base64_and_debug() {
        let b = Bytes(vec![1, 2, 3, 250]);
        assert_eq!(Bytes::from_base64(&b.to_base64()), Ok(b.clone()));
        assert_eq!(format!("{b:?}"), "Bytes(4 bytes)");
        assert!(Bytes::from_base64("!!!").is_err());
        assert!(Bytes::from_base64(&"A".repeat(crate::MAX_FIELD_BYTES * 2)).is_err());
    }
}

#[cfg(test)]
mod username_tests {
    use super::Username;

    fn name(s: &str) -> Username {
        Username::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_are_case_insensitive() {
        for s in ["alice", "Alice", "ALICE", "aLiCe"] {
            assert_eq!(name(s).as_str(), "alice");
        }
        assert_eq!(name("Alice"), name("alice"));
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        for (a, b) in [("alice", "a1ice"), ("bob", "b0b"), ("modem", "rnodern")] {
            assert_eq!(name(a).skeleton(), name(b).skeleton(), "{a} {b}");
        }
        for (a, b) in [("alice", "bob"), ("alice", "alicia"), ("ab", "a.b")] {
            assert_ne!(name(a).skeleton(), name(b).skeleton(), "{a} {b}");
        }
    }
}

/// How many one-time prekeys a user still has on the relay, per mode (`auth_ok`): its client
/// uploads more when one runs low.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrekeyCounts {
    /// Classical one-time prekeys left.
    pub classical: u64,
    /// Hybrid one-time prekeys left.
    pub hybrid: u64,
    /// Quantum one-time prekeys left.
    pub quantum: u64,
}

impl From<[u64; 3]> for PrekeyCounts {
    /// Counts in mode order: classical, hybrid, quantum.
    fn from([classical, hybrid, quantum]: [u64; 3]) -> Self {
        Self {
            classical,
            hybrid,
            quantum,
        }
    }
}

impl PrekeyCounts {
    /// The count for `mode`.
    pub fn get(&self, mode: nano_crypto::CryptoMode) -> u64 {
        match mode {
            nano_crypto::CryptoMode::Classical => self.classical,
            nano_crypto::CryptoMode::Hybrid => self.hybrid,
            nano_crypto::CryptoMode::Quantum => self.quantum,
        }
    }

    /// Sets the count for `mode`.
    pub fn set(&mut self, mode: nano_crypto::CryptoMode, n: u64) {
        match mode {
            nano_crypto::CryptoMode::Classical => self.classical = n,
            nano_crypto::CryptoMode::Hybrid => self.hybrid = n,
            nano_crypto::CryptoMode::Quantum => self.quantum = n,
        }
    }
}
