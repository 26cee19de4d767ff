//! The compact binary form of the frames (WebSocket binary messages).
//!
//! ```text
//! frame   = type (1) ‖ fields, in declaration order, nothing after the last
//! client  = 0x07 hello | 0x01 auth | 0x02 send_message | 0x03 ack | 0x04 read | 0x05 fetch | 0x06 key_exchange
//!           | 0x08 upload_prekeys | 0x09 get_prekeys | 0x0a get_contact | 0x0b get_identity
//! relay   = 0x81 challenge | 0x82 auth_ok | 0x83 message | 0x84 sent | 0x85 key_exchange
//!           | 0x86 key_exchange_ok | 0x87 error | 0x88 fetched | 0x89 prekeys_uploaded
//!           | 0x8a prekey_bundle | 0x8b contact | 0x8c identity_bundle
//! list    = count (2, BE) ‖ bytes × count       one-time prekeys
//! counts  = u64 classical ‖ u64 hybrid ‖ u64 quantum
//! name    = len (1) ‖ UTF-8              usernames, relay id, error code
//! payload = len (4, BE) ‖ bytes          message payloads, raw (no base64)
//! text    = len (4, BE) ‖ UTF-8          error messages
//! bytes   = len (2, BE) ‖ bytes          keys, signatures, nonces, ciphertexts
//! opt(x)  = 0x00 | 0x01 ‖ x
//! ids     = count (2, BE) ‖ 16 × count
//! mode    = 1 byte (0x01 classical, 0x02 hybrid, 0x03 quantum); bool = 0x00 | 0x01
//! u32/u64 = big-endian
//! ```
//!
//! Decoding then applies the same validation as JSON, so both forms accept exactly the same
//! frames.

use nano_crypto::CryptoMode;
use nano_crypto::codec::Reader;

use crate::error::{ErrorCode, ProtoError};
use crate::frames::{ClientFrame, RelayFrame};
use crate::payload::Payload;
use crate::types::{Bytes, MessageId, PrekeyCounts, Username};

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn name(&mut self, s: &str) {
        // Names are ≤ 64 bytes by construction; relay ids are 64 hex digits.
        let b = &s.as_bytes()[..s.len().min(255)];
        self.u8(b.len() as u8);
        self.0.extend_from_slice(b);
    }
    fn text(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn payload(&mut self, p: &Payload) {
        self.u32(u32::try_from(p.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(p.as_slice());
    }
    fn bytes(&mut self, b: &Bytes) {
        let b = &b.0[..b.0.len().min(usize::from(u16::MAX))];
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn mode(&mut self, m: CryptoMode) {
        self.u8(m.to_byte());
    }
    fn id(&mut self, id: &MessageId) {
        self.0.extend_from_slice(&id.0);
    }
    fn ids(&mut self, ids: &[MessageId]) {
        let n = ids.len().min(usize::from(u16::MAX));
        self.0.extend_from_slice(&(n as u16).to_be_bytes());
        for id in &ids[..n] {
            self.id(id);
        }
    }
    fn list(&mut self, items: &[Bytes]) {
        let n = items.len().min(usize::from(u16::MAX));
        self.0.extend_from_slice(&(n as u16).to_be_bytes());
        for b in &items[..n] {
            self.bytes(b);
        }
    }
    fn counts(&mut self, c: &PrekeyCounts) {
        self.u64(c.classical);
        self.u64(c.hybrid);
        self.u64(c.quantum);
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }
}

/// The frame reader: [`nano_crypto::codec::Reader`] for the primitives, every truncation
/// reported as a malformed frame.
struct R<'a>(Reader<'a>);

fn truncated(_: nano_crypto::CryptoError) -> ProtoError {
    ProtoError::Malformed("truncated binary frame".into())
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        self.0.take(n, "frame").map_err(truncated)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        self.0.u8("frame").map_err(truncated)
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        self.0.u16("frame").map_err(truncated)
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        self.0.u32("frame").map_err(truncated)
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        self.0.u64("frame").map_err(truncated)
    }
    fn utf8(b: &[u8]) -> Result<&str, ProtoError> {
        core::str::from_utf8(b).map_err(|_| ProtoError::Malformed("invalid UTF-8".into()))
    }
    fn name(&mut self) -> Result<&'a str, ProtoError> {
        let n = usize::from(self.u8()?);
        Self::utf8(self.take(n)?)
    }
    fn username(&mut self) -> Result<Username, ProtoError> {
        Username::new(self.name()?)
    }
    fn text(&mut self) -> Result<String, ProtoError> {
        let n = self.u32()? as usize;
        if n > crate::MAX_MESSAGE_BYTES {
            return Err(ProtoError::MessageTooLarge {
                max: crate::MAX_MESSAGE_BYTES,
                got: n,
            });
        }
        Ok(Self::utf8(self.take(n)?)?.to_owned())
    }
    fn payload(&mut self) -> Result<Payload, ProtoError> {
        let n = self.u32()? as usize;
        if n > crate::MAX_MESSAGE_BYTES {
            return Err(ProtoError::MessageTooLarge {
                max: crate::MAX_MESSAGE_BYTES,
                got: n,
            });
        }
        Ok(Payload(self.take(n)?.to_vec()))
    }
    fn bytes(&mut self) -> Result<Bytes, ProtoError> {
        let n = usize::from(self.u16()?);
        if n > crate::MAX_FIELD_BYTES {
            return Err(ProtoError::field("bytes", "longer than the field limit"));
        }
        Ok(Bytes(self.take(n)?.to_vec()))
    }
    fn bool(&mut self) -> Result<bool, ProtoError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtoError::Malformed("a flag must be 0 or 1".into())),
        }
    }
    fn mode(&mut self) -> Result<CryptoMode, ProtoError> {
        CryptoMode::from_byte(self.u8()?)
            .map_err(|_| ProtoError::field("crypto_mode", "unknown mode"))
    }
    fn id(&mut self) -> Result<MessageId, ProtoError> {
        self.0.array("frame").map(MessageId).map_err(truncated)
    }
    fn ids(&mut self) -> Result<Vec<MessageId>, ProtoError> {
        let n = usize::from(self.u16()?);
        if n > crate::MAX_IDS_PER_FRAME {
            return Err(ProtoError::field("ids", "must list 1 to 1024 message ids"));
        }
        (0..n).map(|_| self.id()).collect()
    }
    fn list(&mut self) -> Result<Vec<Bytes>, ProtoError> {
        let n = usize::from(self.u16()?);
        if n > crate::frames::MAX_PREKEYS_PER_UPLOAD {
            return Err(ProtoError::field(
                "one_time_prekeys",
                "at most 25 one-time prekeys per upload",
            ));
        }
        (0..n).map(|_| self.bytes()).collect()
    }
    fn counts(&mut self) -> Result<PrekeyCounts, ProtoError> {
        Ok(PrekeyCounts {
            classical: self.u64()?,
            hybrid: self.u64()?,
            quantum: self.u64()?,
        })
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ProtoError>,
    ) -> Result<Option<T>, ProtoError> {
        if self.bool()? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }
    fn finish(self) -> Result<(), ProtoError> {
        self.0
            .finish("frame")
            .map_err(|_| ProtoError::Malformed("trailing bytes after the frame".into()))
    }
}

fn error_code(s: &str) -> Result<ErrorCode, ProtoError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| ProtoError::field("code", "unknown error code"))
}

impl ClientFrame {
    /// The binary form of a valid frame (validation bounds every length the format stores).
    pub fn to_binary(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = Vec::new();
        self.write_binary(&mut out)?;
        Ok(out)
    }

    /// Appends the binary form of a valid frame to `out` (a reused buffer).
    pub fn write_binary(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        self.validate()?;
        let mut w = W(std::mem::take(out));
        match self {
            Self::Hello { crypto_mode, nonce } => {
                w.u8(0x07);
                w.mode(*crypto_mode);
                w.bytes(nonce);
            }
            Self::Auth {
                username,
                crypto_mode,
                signature,
            } => {
                w.u8(0x01);
                w.name(username.as_str());
                w.mode(*crypto_mode);
                w.bytes(signature);
            }
            Self::SendMessage {
                recipient,
                message,
                crypto_mode,
                id,
            } => {
                w.u8(0x02);
                w.name(recipient.as_str());
                w.payload(message);
                w.mode(*crypto_mode);
                w.opt(id.as_ref(), W::id);
            }
            Self::Ack { ids } => {
                w.u8(0x03);
                w.ids(ids);
            }
            Self::Read { ids } => {
                w.u8(0x04);
                w.ids(ids);
            }
            Self::Fetch { after, limit } => {
                w.u8(0x05);
                w.opt(after.as_ref(), |w, v| w.u64(*v));
                w.opt(limit.as_ref(), |w, v| w.u32(*v));
            }
            Self::KeyExchange {
                crypto_mode,
                key_id,
                ciphertext,
            } => {
                w.u8(0x06);
                w.mode(*crypto_mode);
                w.opt(key_id.as_ref(), |w, v| w.u64(*v));
                w.opt(ciphertext.as_ref(), W::bytes);
            }
            Self::UploadPrekeys {
                crypto_mode,
                signed_prekeys,
                one_time_prekeys,
                replace_one_time,
            } => {
                w.u8(0x08);
                w.mode(*crypto_mode);
                w.opt(signed_prekeys.as_ref(), W::bytes);
                w.list(one_time_prekeys);
                w.u8(u8::from(*replace_one_time));
            }
            Self::GetPrekeys {
                username,
                crypto_mode,
            } => {
                w.u8(0x09);
                w.name(username.as_str());
                w.mode(*crypto_mode);
            }
            Self::GetContact {
                username,
                crypto_mode,
            } => {
                w.u8(0x0a);
                w.name(username.as_str());
                w.mode(*crypto_mode);
            }
            Self::GetIdentity { username } => {
                w.u8(0x0b);
                w.name(username.as_str());
            }
        }
        *out = w.0;
        Ok(())
    }

    /// Parses and validates a binary frame.
    pub fn from_binary(bytes: &[u8]) -> Result<Self, ProtoError> {
        let mut r = R(Reader::new(bytes));
        let f = match r.u8()? {
            0x07 => Self::Hello {
                crypto_mode: r.mode()?,
                nonce: r.bytes()?,
            },
            0x01 => Self::Auth {
                username: r.username()?,
                crypto_mode: r.mode()?,
                signature: r.bytes()?,
            },
            0x02 => Self::SendMessage {
                recipient: r.username()?,
                message: r.payload()?,
                crypto_mode: r.mode()?,
                id: r.opt(R::id)?,
            },
            0x03 => Self::Ack { ids: r.ids()? },
            0x04 => Self::Read { ids: r.ids()? },
            0x05 => Self::Fetch {
                after: r.opt(R::u64)?,
                limit: r.opt(R::u32)?,
            },
            0x06 => Self::KeyExchange {
                crypto_mode: r.mode()?,
                key_id: r.opt(R::u64)?,
                ciphertext: r.opt(R::bytes)?,
            },
            0x08 => Self::UploadPrekeys {
                crypto_mode: r.mode()?,
                signed_prekeys: r.opt(R::bytes)?,
                one_time_prekeys: r.list()?,
                replace_one_time: r.bool()?,
            },
            0x09 => Self::GetPrekeys {
                username: r.username()?,
                crypto_mode: r.mode()?,
            },
            0x0a => Self::GetContact {
                username: r.username()?,
                crypto_mode: r.mode()?,
            },
            0x0b => Self::GetIdentity {
                username: r.username()?,
            },
            t => return Err(ProtoError::UnknownType(format!("{t:#04x}"))),
        };
        r.finish()?;
        f.validate()?;
        Ok(f)
    }
}

impl RelayFrame {
    /// The binary form of a valid frame (validation bounds every length the format stores).
    pub fn to_binary(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = Vec::new();
        self.write_binary(&mut out)?;
        Ok(out)
    }

    /// Appends the binary form of a valid frame to `out` (a reused buffer).
    pub fn write_binary(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        self.validate()?;
        let mut w = W(std::mem::take(out));
        match self {
            Self::Challenge {
                nonce,
                relay_id,
                crypto_mode,
                channel_binding,
                signature,
            } => {
                w.u8(0x81);
                w.bytes(nonce);
                w.name(relay_id);
                w.mode(*crypto_mode);
                w.u8(channel_binding.to_byte());
                w.bytes(signature);
            }
            Self::AuthOk {
                username,
                pending,
                one_time_prekeys,
            } => {
                w.u8(0x82);
                w.name(username.as_str());
                w.u64(*pending);
                w.opt(one_time_prekeys.as_ref(), W::counts);
            }
            Self::Message {
                id,
                seq,
                sender,
                crypto_mode,
                timestamp_ms,
                message,
            } => {
                w.u8(0x83);
                w.id(id);
                w.u64(*seq);
                w.opt(sender.as_ref(), |w, s| w.name(s.as_str()));
                w.mode(*crypto_mode);
                w.u64(*timestamp_ms);
                w.payload(message);
            }
            Self::Sent { id, duplicate } => {
                w.u8(0x84);
                w.id(id);
                w.u8(u8::from(*duplicate));
            }
            Self::KeyExchange {
                crypto_mode,
                key_id,
                public_key,
                signature,
                expires_at_ms,
            } => {
                w.u8(0x85);
                w.mode(*crypto_mode);
                w.u64(*key_id);
                w.bytes(public_key);
                w.bytes(signature);
                w.u64(*expires_at_ms);
            }
            Self::Fetched {
                count,
                last_seq,
                more,
            } => {
                w.u8(0x88);
                w.u32(*count);
                w.opt(last_seq.as_ref(), |w, v| w.u64(*v));
                w.u8(u8::from(*more));
            }
            Self::KeyExchangeOk {
                key_id,
                confirmation,
            } => {
                w.u8(0x86);
                w.u64(*key_id);
                w.bytes(confirmation);
            }
            Self::PrekeysUploaded {
                crypto_mode,
                one_time_prekeys,
            } => {
                w.u8(0x89);
                w.mode(*crypto_mode);
                w.u64(*one_time_prekeys);
            }
            Self::PrekeyBundle {
                username,
                crypto_mode,
                bundle,
            } => {
                w.u8(0x8a);
                w.name(username.as_str());
                w.mode(*crypto_mode);
                w.bytes(bundle);
            }
            Self::Contact {
                username,
                crypto_mode,
                identity,
                bundle,
            } => {
                w.u8(0x8b);
                w.name(username.as_str());
                w.mode(*crypto_mode);
                w.bytes(identity);
                w.opt(bundle.as_ref(), W::bytes);
            }
            Self::IdentityBundle { username, bundle } => {
                w.u8(0x8c);
                w.name(username.as_str());
                w.bytes(bundle);
            }
            Self::Error { code, message, id } => {
                w.u8(0x87);
                w.name(code.as_str());
                w.text(message);
                w.opt(id.as_ref(), W::id);
            }
        }
        *out = w.0;
        Ok(())
    }

    /// Parses and validates a binary frame.
    pub fn from_binary(bytes: &[u8]) -> Result<Self, ProtoError> {
        let mut r = R(Reader::new(bytes));
        let f = match r.u8()? {
            0x81 => Self::Challenge {
                nonce: r.bytes()?,
                relay_id: r.name()?.to_owned(),
                crypto_mode: r.mode()?,
                channel_binding: crate::BindingKind::from_byte(r.u8()?)?,
                signature: r.bytes()?,
            },
            0x82 => Self::AuthOk {
                username: r.username()?,
                pending: r.u64()?,
                one_time_prekeys: r.opt(R::counts)?,
            },
            0x83 => Self::Message {
                id: r.id()?,
                seq: r.u64()?,
                sender: r.opt(R::username)?,
                crypto_mode: r.mode()?,
                timestamp_ms: r.u64()?,
                message: r.payload()?,
            },
            0x84 => Self::Sent {
                id: r.id()?,
                duplicate: r.bool()?,
            },
            0x85 => Self::KeyExchange {
                crypto_mode: r.mode()?,
                key_id: r.u64()?,
                public_key: r.bytes()?,
                signature: r.bytes()?,
                expires_at_ms: r.u64()?,
            },
            0x88 => Self::Fetched {
                count: r.u32()?,
                last_seq: r.opt(R::u64)?,
                more: r.bool()?,
            },
            0x86 => Self::KeyExchangeOk {
                key_id: r.u64()?,
                confirmation: r.bytes()?,
            },
            0x89 => Self::PrekeysUploaded {
                crypto_mode: r.mode()?,
                one_time_prekeys: r.u64()?,
            },
            0x8a => Self::PrekeyBundle {
                username: r.username()?,
                crypto_mode: r.mode()?,
                bundle: r.bytes()?,
            },
            0x8b => Self::Contact {
                username: r.username()?,
                crypto_mode: r.mode()?,
                identity: r.bytes()?,
                bundle: r.opt(R::bytes)?,
            },
            0x8c => Self::IdentityBundle {
                username: r.username()?,
                bundle: r.bytes()?,
            },
            0x87 => Self::Error {
                code: error_code(r.name()?)?,
                message: r.text()?,
                id: r.opt(R::id)?,
            },
            t => return Err(ProtoError::UnknownType(format!("{t:#04x}"))),
        };
        r.finish()?;
        f.validate()?;
        Ok(f)
    }
}
