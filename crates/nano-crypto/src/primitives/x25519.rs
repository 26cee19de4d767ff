//! X25519 (aws-lc-rs) and the classical DHKEM built on it.
//!
//! DHKEM (ephemeral-static, as in RFC 9180 §4.1 but with our own label): the sender makes an
//! ephemeral key `e`, sends `enc = X25519(e, G)`, and both sides derive
//! `ss = HKDF-SHA256(salt = "", ikm = X25519(e, pkR), info = label ‖ enc ‖ pkR)`, binding both
//! public keys into the secret. An all-zero DH output (a low-order peer point) is rejected.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use subtle::ConstantTimeEq;

use crate::error::{CryptoError, Result};
use crate::kdf::{self, KdfLabel};
use crate::secret::{SecretBytes, SharedSecret};
use crate::secure_mem::SecureBox;

/// Public key / encapsulation length.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Secret key (seed) length.
pub const SECRET_KEY_LEN: usize = 32;

/// The canonical u-coordinates of every point of small order on Curve25519 (order 1, 2, 4 or 8)
/// and on its quadratic twist (order 1, 2 or 4): 0, 1, the two of order 8, and p − 1. With the
/// point at infinity these are all the points `P` with `[8]·P = 0` (the curve's cofactor is 8,
/// the twist's 4), the list libsodium's `has_small_order` checks; little-endian.
const SMALL_ORDER: [[u8; PUBLIC_KEY_LEN]; 5] = [
    [0; 32],
    {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    {
        let mut p_minus_1 = [0xff; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        p_minus_1
    },
];

/// Checks a peer's X25519 public key before it is used or pinned: the canonical encoding of a
/// u-coordinate (bit 255 clear, u < 2^255 − 19) that is not of small order on the curve or its
/// twist (`[8]·u ≠ 0`, decided by comparing with the five [`SMALL_ORDER`] coordinates rather
/// than by a scalar multiplication). Such keys make every key agreement with them produce a
/// known (all-zero) secret, so a bundle carrying one can never be used. Errors with
/// [`CryptoError::InvalidKey`] naming the reason.
pub fn validate_public(u: &[u8; PUBLIC_KEY_LEN]) -> Result<()> {
    check_canonical(u)?;
    // Public keys: no secret to hide, but the comparison need not branch on their bytes.
    let small = SMALL_ORDER
        .iter()
        .fold(subtle::Choice::from(0), |acc, s| acc | s.ct_eq(u));
    if bool::from(small) {
        return Err(CryptoError::InvalidKey("X25519 (small-order point)"));
    }
    Ok(())
}

/// Checks only that `u` is a canonical u-coordinate (bit 255 clear, u < 2^255 − 19): a cheap
/// comparison. For keys used at once in a DH, whose all-zero output already rejects every
/// small-order point ([`X25519KeyPair::diffie_hellman`]), this is the whole check; keys that are
/// stored or pinned get [`validate_public`].
///
/// # Errors
/// [`CryptoError::InvalidKey`] for a non-canonical encoding.
pub fn check_canonical(u: &[u8; PUBLIC_KEY_LEN]) -> Result<()> {
    // p = 2^255 − 19, little-endian.
    const P: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };
    let below_p = u
        .iter()
        .rev()
        .zip(P.iter().rev())
        .find(|(a, b)| a != b)
        .is_some_and(|(a, b)| a < b);
    if below_p {
        Ok(())
    } else {
        Err(CryptoError::InvalidKey("X25519 (non-canonical encoding)"))
    }
}

/// An aws-lc X25519 key from 32 secret bytes, and its public key.
fn private_key(secret: &[u8; SECRET_KEY_LEN]) -> Result<(PrivateKey, [u8; PUBLIC_KEY_LEN])> {
    let key = PrivateKey::from_private_key(&X25519, secret)
        .map_err(|_| CryptoError::InvalidKey("x25519"))?;
    let pk = key
        .compute_public_key()
        .map_err(|_| CryptoError::Internal("x25519 public key"))?;
    let public: [u8; PUBLIC_KEY_LEN] = pk
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::Internal("x25519 public key length"))?;
    Ok((key, public))
}

/// Raw X25519 of `key` with `peer`; an all-zero output (a small-order peer point) is an error.
fn agree(key: &PrivateKey, peer: &[u8; PUBLIC_KEY_LEN]) -> Result<SharedSecret> {
    agreement::agree(
        key,
        UnparsedPublicKey::new(&X25519, peer),
        CryptoError::KeyAgreement,
        |dh| SecretBytes::from_slice(dh).ok_or(CryptoError::KeyAgreement),
    )
}

/// An X25519 static key pair.
pub struct X25519KeyPair {
    secret: SecureBox,
    key: PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl core::fmt::Debug for X25519KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("X25519KeyPair")
            .field("public", &hex_short(&self.public))
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex_short(b: &[u8]) -> String {
    b.iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        + "…"
}

impl X25519KeyPair {
    /// Builds the key pair from its 32 secret bytes (clamped by X25519 itself).
    pub fn from_secret(secret: &[u8; SECRET_KEY_LEN]) -> Result<Self> {
        let (key, public) = private_key(secret)?;
        Ok(Self {
            secret: SecureBox::from_slice(secret),
            key,
            public,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The secret bytes (for encrypted storage only).
    pub fn secret_bytes(&self) -> &[u8] {
        self.secret.as_slice()
    }

    /// Raw X25519 with `peer`. Fails on a low-order peer point (all-zero output).
    pub fn diffie_hellman(&self, peer: &[u8; PUBLIC_KEY_LEN]) -> Result<SharedSecret> {
        agree(&self.key, peer)
    }

    /// DHKEM decapsulation of `enc`.
    pub fn decapsulate(&self, enc: &[u8; PUBLIC_KEY_LEN]) -> Result<SharedSecret> {
        let dh = self.diffie_hellman(enc)?;
        kdf::derive(KdfLabel::X25519Kem, b"", dh.expose(), &[enc, &self.public])
    }
}

/// A short-lived X25519 key pair (a ratchet key): the secret lives in a zeroizing array and in
/// aws-lc (which cleanses it on free), never in locked pages, so making one costs a scalar
/// multiplication and nothing else (no `mlock` system call).
pub struct EphemeralX25519 {
    secret: zeroize::Zeroizing<[u8; SECRET_KEY_LEN]>,
    key: PrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl core::fmt::Debug for EphemeralX25519 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EphemeralX25519")
            .field("public", &hex_short(&self.public))
            .finish_non_exhaustive()
    }
}

impl EphemeralX25519 {
    /// Builds the key pair from 32 secret bytes (uniform; clamped by X25519 itself).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] / [`CryptoError::Internal`] if aws-lc refuses the scalar.
    pub fn from_secret(secret: &[u8; SECRET_KEY_LEN]) -> Result<Self> {
        let (key, public) = private_key(secret)?;
        Ok(Self {
            secret: zeroize::Zeroizing::new(*secret),
            key,
            public,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The secret bytes (for the encrypted session store only).
    pub fn secret_bytes(&self) -> &[u8; SECRET_KEY_LEN] {
        &self.secret
    }

    /// Raw X25519 with `peer`. Fails on a low-order peer point (all-zero output).
    pub fn diffie_hellman(&self, peer: &[u8; PUBLIC_KEY_LEN]) -> Result<SharedSecret> {
        agree(&self.key, peer)
    }
}

/// An ephemeral X25519 exchange with `peer`: returns (`X25519(eph, G)`, `X25519(eph, peer)`).
/// The ephemeral key lives only inside aws-lc for the duration of the call (no locked pages:
/// it is gone before the call returns).
pub fn ephemeral_exchange(
    eph: &[u8; SECRET_KEY_LEN],
    peer: &[u8; PUBLIC_KEY_LEN],
) -> Result<([u8; PUBLIC_KEY_LEN], SharedSecret)> {
    let (key, public) = private_key(eph)?;
    let dh = agree(&key, peer)?;
    Ok((public, dh))
}

/// DHKEM encapsulation to `pk` with ephemeral secret `eph` (uniform random, used once).
pub fn encapsulate_derand(
    pk: &[u8; PUBLIC_KEY_LEN],
    eph: &[u8; SECRET_KEY_LEN],
) -> Result<([u8; PUBLIC_KEY_LEN], SharedSecret)> {
    let (enc, dh) = ephemeral_exchange(eph, pk)?;
    let ss = kdf::derive(KdfLabel::X25519Kem, b"", dh.expose(), &[&enc, pk])?;
    Ok((enc, ss))
}
