//! The session message header: its byte layout per mode, and the varint it uses.
//!
//! ```text
//! classical  type (1) ‖ mode (1) ‖ dh (32) ‖ pn (varint) ‖ n (varint)
//! hybrid     type (1) ‖ mode (1) ‖ epoch (varint) ‖ dh (32) ‖ pn (varint) ‖ n (varint)
//!            ‖ chunk index (1) ‖ [chunk (9) if index ≠ 0]
//! quantum    type (1) ‖ mode (1) ‖ epoch (varint) ‖ n (varint)
//!            ‖ chunk index (1) ‖ [chunk (42) if index ≠ 0]
//! message  = header ‖ AEAD ciphertext ‖ tag (16)
//! ```
//!
//! Varints are unsigned LEB128 of a `u32`, minimal (a non-minimal or over-long encoding is
//! malformed), so every value has exactly one encoding. The chunk size is chosen per mode so that
//! a steady-state message adds at most 64 bytes to its plaintext while `n < 16,384`.

use crate::codec::Reader;
use crate::error::{CryptoError, Result};
use crate::mode::CryptoMode;
use crate::primitives::x25519;

/// First byte of a session handshake (the first message of a session).
pub const TYPE_HANDSHAKE: u8 = 0x02;
/// First byte of a session message.
pub const TYPE_MESSAGE: u8 = 0x03;
/// Longest header of any mode: hybrid with 5-byte varints and a chunk (59 bytes).
pub const MAX_HEADER_LEN: usize = 2 + 5 + x25519::PUBLIC_KEY_LEN + 5 + 5 + 1 + 9;

/// KEM-ratchet chunk size in bytes for a mode (0: the mode has no KEM ratchet).
pub const fn chunk_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => 0,
        CryptoMode::Hybrid => 9,
        CryptoMode::Quantum => 42,
    }
}

/// Whether a mode runs the X25519 DH ratchet.
pub(crate) const fn has_dh(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Quantum)
}

/// Whether a mode runs the KEM ratchet.
pub(crate) const fn has_kem(mode: CryptoMode) -> bool {
    !matches!(mode, CryptoMode::Classical)
}

/// One KEM-ratchet chunk: its 0-based index in the item and its bytes (zero-padded at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk<'a> {
    pub(crate) index: u8,
    pub(crate) data: &'a [u8],
}

/// A decoded session message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) mode: CryptoMode,
    /// KEM epoch whose key this message uses (0 in classical).
    pub(crate) epoch: u32,
    /// The sender's ratchet public key (classical, hybrid).
    pub(crate) dh: Option<[u8; x25519::PUBLIC_KEY_LEN]>,
    /// Length of the sender's previous sending chain.
    pub(crate) pn: u32,
    /// Index of this message in its chain.
    pub(crate) n: u32,
    pub(crate) chunk: Option<Chunk<'a>>,
}

impl<'a> Header<'a> {
    /// Appends the encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(TYPE_MESSAGE);
        out.push(self.mode.to_byte());
        if has_kem(self.mode) {
            put_varint(out, self.epoch);
        }
        if let Some(dh) = &self.dh {
            out.extend_from_slice(dh);
            put_varint(out, self.pn);
        }
        put_varint(out, self.n);
        if has_kem(self.mode) {
            match self.chunk {
                Some(c) => {
                    out.push(c.index + 1);
                    out.extend_from_slice(c.data);
                }
                None => out.push(0),
            }
        }
    }

    /// Decodes a header from the front of `bytes`, returning it and its length. The message type
    /// must be [`TYPE_MESSAGE`].
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<(Self, usize)> {
        let mut r = Reader::new(bytes);
        let kind = r.u8("session message type")?;
        if kind != TYPE_MESSAGE {
            return Err(CryptoError::UnsupportedVersion {
                what: "session message",
                version: kind,
            });
        }
        let mode = CryptoMode::from_byte(r.u8("session message mode")?)?;
        let epoch = if has_kem(mode) {
            varint(&mut r, "epoch")?
        } else {
            0
        };
        let (dh, pn) = if has_dh(mode) {
            (
                Some(r.array::<{ x25519::PUBLIC_KEY_LEN }>("ratchet key")?),
                varint(&mut r, "pn")?,
            )
        } else {
            (None, 0)
        };
        let n = varint(&mut r, "n")?;
        let chunk = if has_kem(mode) {
            match r.u8("chunk index")? {
                0 => None,
                i => Some(Chunk {
                    index: i - 1,
                    data: r.take(chunk_len(mode), "chunk")?,
                }),
            }
        } else {
            None
        };
        let len = bytes.len() - r.rest_len();
        Ok((
            Self {
                mode,
                epoch,
                dh,
                pn,
                n,
                chunk,
            },
            len,
        ))
    }
}

/// Appends `v` as minimal unsigned LEB128.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a minimal unsigned LEB128 `u32` (at most 5 bytes).
pub(crate) fn varint(r: &mut Reader<'_>, what: &'static str) -> Result<u32> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let b = r.u8(what)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A final zero byte after the first is a non-minimal encoding.
            if i > 0 && b == 0 {
                break;
            }
            return u32::try_from(v).map_err(|_| CryptoError::InvalidLength {
                what,
                expected: 4,
                got: 5,
            });
        }
    }
    Err(CryptoError::InvalidLength {
        what,
        expected: 4,
        got: 5,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_are_minimal() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(varint(&mut r, "v").unwrap(), v);
            r.finish("v").unwrap();
        }
        for bad in [
            &[0x80, 0x00][..],
            &[0xff, 0xff, 0xff, 0xff, 0x7f],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[0x80],
        ] {
            assert!(varint(&mut Reader::new(bad), "v").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_round_trip_in_every_mode() {
        let data = [7u8; 42];
        for mode in CryptoMode::ALL {
            let h = Header {
                mode,
                epoch: if has_kem(mode) { 3 } else { 0 },
                dh: has_dh(mode).then_some([9u8; 32]),
                pn: if has_dh(mode) { 200 } else { 0 },
                n: 17_000,
                chunk: has_kem(mode).then(|| Chunk {
                    index: 5,
                    data: &data[..chunk_len(mode)],
                }),
            };
            let mut out = Vec::new();
            h.encode(&mut out);
            assert!(out.len() <= MAX_HEADER_LEN);
            let (back, len) = Header::decode(&out).unwrap();
            assert_eq!((back, len), (h, out.len()));
        }
    }
}
