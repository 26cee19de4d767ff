//! ChaCha20-Poly1305 and AES-256-GCM behind one type, tagged by a one-byte id.
//!
//! The id travels in every envelope header, so either side can read both; the sender picks by
//! [`crate::CryptoAcceleration::preferred_aead`]. Keys are always 32 bytes, nonces 12, tags 16.

use core::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::error::{CryptoError, Result};
use crate::secret::SymmetricKey;

/// AEAD key length in bytes.
pub const KEY_LEN: usize = 32;
/// AEAD nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// AEAD tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Which AEAD protects a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum AeadId {
    /// ChaCha20-Poly1305 (RFC 8439).
    ChaCha20Poly1305 = 1,
    /// AES-256-GCM.
    Aes256Gcm = 2,
}

impl AeadId {
    /// Both AEADs.
    pub const ALL: [AeadId; 2] = [Self::ChaCha20Poly1305, Self::Aes256Gcm];

    /// The header byte.
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Decodes a header byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::ChaCha20Poly1305),
            2 => Ok(Self::Aes256Gcm),
            other => Err(CryptoError::UnknownAead(other)),
        }
    }

    /// The human name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }
}

impl fmt::Display for AeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A keyed AEAD instance. The key schedule lives inside aws-lc, which cleanses it on free.
pub struct AeadKey {
    id: AeadId,
    key: LessSafeKey,
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Keys `id` with `key`.
    pub fn new(id: AeadId, key: &SymmetricKey) -> Result<Self> {
        let alg = match id {
            AeadId::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            AeadId::Aes256Gcm => &AES_256_GCM,
        };
        let unbound =
            UnboundKey::new(alg, key.expose()).map_err(|_| CryptoError::Internal("aead key"))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    /// The algorithm.
    pub fn id(&self) -> AeadId {
        self.id
    }

    /// Encrypts `plaintext`, returning ciphertext ‖ tag. Each (key, nonce) must be used once.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut out,
            )
            .map_err(|_| CryptoError::Internal("aead seal"))?;
        Ok(out)
    }

    /// Encrypts `buf[aad_len..]` in place with `buf[..aad_len]` as associated data and appends
    /// the tag: the one allocation is the caller's buffer (reserve `TAG_LEN` to avoid a regrow).
    ///
    /// # Errors
    /// [`CryptoError::InvalidLength`] if `aad_len` exceeds the buffer; [`CryptoError::Internal`]
    /// if aws-lc refuses (never for these sizes).
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &mut Vec<u8>,
        aad_len: usize,
    ) -> Result<()> {
        if aad_len > buf.len() {
            return Err(CryptoError::InvalidLength {
                what: "aead associated data",
                expected: buf.len(),
                got: aad_len,
            });
        }
        let (aad, in_out) = buf.split_at_mut(aad_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(&*aad),
                in_out,
            )
            .map_err(|_| CryptoError::Internal("aead seal"))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts ciphertext ‖ tag. Any change to key, nonce, aad, ciphertext or tag fails.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < TAG_LEN {
            return Err(CryptoError::Truncated { what: "aead tag" });
        }
        let mut buf = sealed.to_vec();
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Decryption)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SymmetricKey {
        SymmetricKey::new([b; 32])
    }

    #[test]
    fn rfc8439_chacha20poly1305_vector() {
        // RFC 8439 §2.8.2.
        let k: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let a = AeadKey::new(AeadId::ChaCha20Poly1305, &SymmetricKey::new(k)).unwrap();
        let ct = a.seal(&nonce, &aad, pt).unwrap();
        assert_eq!(
            hex::encode(&ct[pt.len()..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        assert_eq!(hex::encode(&ct[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        assert_eq!(a.open(&nonce, &aad, &ct).unwrap(), pt);
    }

    #[test]
    fn both_aeads_reject_every_kind_of_tampering() {
        for id in AeadId::ALL {
            let a = AeadKey::new(id, &key(1)).unwrap();
            let n = [3u8; 12];
            let ct = a.seal(&n, b"hdr", b"hello").unwrap();
            assert_eq!(ct.len(), 5 + TAG_LEN);
            assert_eq!(a.open(&n, b"hdr", &ct).unwrap(), b"hello");
            for i in 0..ct.len() {
                let mut bad = ct.clone();
                bad[i] ^= 1;
                assert_eq!(a.open(&n, b"hdr", &bad), Err(CryptoError::Decryption));
            }
            assert_eq!(a.open(&n, b"hdx", &ct), Err(CryptoError::Decryption));
            assert_eq!(
                a.open(&[4u8; 12], b"hdr", &ct),
                Err(CryptoError::Decryption)
            );
            let other = AeadKey::new(id, &key(2)).unwrap();
            assert_eq!(other.open(&n, b"hdr", &ct), Err(CryptoError::Decryption));
            assert!(a.open(&n, b"hdr", &ct[..TAG_LEN - 1]).is_err());
            assert_eq!(
                a.open(&n, b"hdr", &ct[..ct.len() - 1]),
                Err(CryptoError::Decryption)
            );
        }
    }

    #[test]
    fn ids_round_trip_and_unknown_is_error() {
        for id in AeadId::ALL {
            assert_eq!(AeadId::from_byte(id.to_byte()), Ok(id));
        }
        assert_eq!(AeadId::from_byte(0), Err(CryptoError::UnknownAead(0)));
        assert_eq!(AeadId::from_byte(3), Err(CryptoError::UnknownAead(3)));
    }
}
