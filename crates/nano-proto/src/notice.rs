//! Session notices (PROTOCOL.md §14.14): what a receiver that cannot read a session payload
//! tells its sender, end to end. On the wire a notice is `0x04 ‖ mode ‖ sealed envelope` (§6),
//! sealed by the receiver to the sender in that mode; the envelope's plaintext is a [`Notice`]. The relay sees the
//! envelope's clear header only (its id and mode), as for any envelope.

use nano_crypto::CryptoMode;

use crate::error::ProtoError;
use crate::types::MessageId;

/// First byte of a notice payload (after the session types `0x02` handshake, `0x03` message).
pub const TYPE_NOTICE: u8 = 0x04;

/// Length of an encoded [`Notice`]: kind (1) ‖ mode (1) ‖ lost id (16) ‖ stored at (8).
pub const NOTICE_LEN: usize = 26;

const KIND_SESSION_UNKNOWN: u8 = 0x01;

/// "I could not read your session payload `lost` (mode `mode`): I hold no session it belongs
/// to." The sender drops its sessions with the receiver in `mode` that started before the
/// notice was sealed, and its next message starts a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The mode of the session payload that could not be read.
    pub mode: CryptoMode,
    /// Its message id (as the relay delivered it).
    pub lost: MessageId,
    /// When the relay stored it (the `message` frame's `timestamp_ms`, relay clock, ms).
    pub lost_stored_at_ms: u64,
}

impl Notice {
    /// The 26 bytes: `0x01 (session_unknown) ‖ mode (1) ‖ lost id (16) ‖ stored at (8, BE)`.
    pub fn to_bytes(&self) -> [u8; NOTICE_LEN] {
        let mut out = [0u8; NOTICE_LEN];
        out[0] = KIND_SESSION_UNKNOWN;
        out[1] = self.mode.to_byte();
        out[2..18].copy_from_slice(&self.lost.0);
        out[18..].copy_from_slice(&self.lost_stored_at_ms.to_be_bytes());
        out
    }

    /// Parses [`Notice::to_bytes`]' bytes.
    ///
    /// # Errors
    /// [`ProtoError::InvalidField`] for another length, an unknown kind or mode.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ProtoError> {
        let bad = |what: &str| ProtoError::InvalidField {
            field: "notice",
            reason: what.to_owned(),
        };
        let b: &[u8; NOTICE_LEN] = b.try_into().map_err(|_| bad("wrong length"))?;
        if b[0] != KIND_SESSION_UNKNOWN {
            return Err(bad("unknown kind"));
        }
        let mode = CryptoMode::from_byte(b[1]).map_err(|_| bad("unknown mode"))?;
        let mut lost = [0u8; 16];
        lost.copy_from_slice(&b[2..18]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&b[18..]);
        Ok(Self {
            mode,
            lost: MessageId(lost),
            lost_stored_at_ms: u64::from_be_bytes(at),
        })
    }
}

/// The notice payload of an envelope sealed in `mode`: `0x04 ‖ mode ‖ envelope` (byte 1 is
/// the mode, as in every payload).
pub fn wrap(mode: CryptoMode, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + envelope.len());
    out.push(TYPE_NOTICE);
    out.push(mode.to_byte());
    out.extend_from_slice(envelope);
    out
}

/// The envelope inside a notice payload, if `payload` is one: type byte `0x04`, and a mode
/// byte equal to the envelope's own (byte 1 of the envelope is its version, byte 2 its mode).
pub fn unwrap(payload: &[u8]) -> Option<&[u8]> {
    match payload {
        [TYPE_NOTICE, mode, envelope @ ..] if envelope.get(1) == Some(mode) => Some(envelope),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_are_pinned() {
        let n = Notice {
            mode: CryptoMode::Hybrid,
            lost: MessageId([0xab; 16]),
            lost_stored_at_ms: 0x0102_0304_0506_0708,
        };
        let b = n.to_bytes();
        let mut want = vec![0x01, 0x02];
        want.extend_from_slice(&[0xab; 16]);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b.to_vec(), want);
        assert_eq!(Notice::from_bytes(&b), Ok(n));
    }

    #[test]
    fn bad_notices_are_refused() {
        let good = Notice {
            mode: CryptoMode::Quantum,
            lost: MessageId([1; 16]),
            lost_stored_at_ms: 5,
        }
        .to_bytes();
        assert!(Notice::from_bytes(&good[..25]).is_err());
        let mut long = good.to_vec();
        long.push(0);
        assert!(Notice::from_bytes(&long).is_err());
        let mut kind = good;
        kind[0] = 2;
        assert!(Notice::from_bytes(&kind).is_err());
        let mut mode = good;
        mode[1] = 9;
        assert!(Notice::from_bytes(&mode).is_err());
        let env = [1u8, 2, 9];
        assert_eq!(unwrap(&wrap(CryptoMode::Hybrid, &env)), Some(&env[..]));
        // The outer mode byte must be the envelope's.
        assert_eq!(unwrap(&wrap(CryptoMode::Quantum, &env)), None);
        assert_eq!(unwrap(&[3, 7]), None);
        assert_eq!(unwrap(&[4]), None);
        assert_eq!(unwrap(&[]), None);
    }
}
