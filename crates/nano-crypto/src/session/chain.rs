//! Symmetric chains and the key derivations of the ratchets.
//!
//! ```text
//! message key  mk      = HMAC-SHA256(ck, 0x01)          (Double Ratchet spec §5.2, KDF_CK)
//! next chain   ck'     = HMAC-SHA256(ck, 0x02)
//! root step    rk' ‖ ck = HKDF-SHA256(salt = rk, ikm = X25519 output,
//!                                     info = "nano-messenger/v1 ratchet-root")   (64 bytes)
//! epoch key    pq_k    = HKDF-SHA256(salt = pq_{k-1}, ikm = KEM shared secret,
//!                                     info = "nano-messenger/v1 pq-epoch" ‖ k (u32 BE))
//! AEAD key     classical: mk; hybrid, quantum: HMAC-SHA256(pq_e, 0x03 ‖ mk)
//! ```
//!
//! Mixing the epoch key into every message key is what makes the KEM ratchet count: a message
//! key needs both the (classical) chain and the post-quantum epoch key.

use aws_lc_rs::hmac;

use crate::error::Result;
use crate::kdf::{self, KdfLabel};
use crate::secret::{SecretBytes, SymmetricKey};

/// A chain key and the index of the next message key it yields.
pub(crate) struct Chain {
    pub(crate) key: SymmetricKey,
    pub(crate) n: u32,
}

impl core::fmt::Debug for Chain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// A chain at index 0.
    pub(crate) fn new(key: SymmetricKey) -> Self {
        Self { key, n: 0 }
    }

    /// The message key for index `n` and the chain key after it, without changing `self`.
    pub(crate) fn peek(key: &SymmetricKey) -> (SymmetricKey, SymmetricKey) {
        let k = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
        (tag32(&k, &[0x01]), tag32(&k, &[0x02]))
    }

    /// Yields the next message key and advances.
    pub(crate) fn step(&mut self) -> SymmetricKey {
        let (mk, next) = Self::peek(&self.key);
        self.key = next;
        self.n = self.n.wrapping_add(1);
        mk
    }
}

fn tag32(key: &hmac::Key, msg: &[u8]) -> SymmetricKey {
    let tag = hmac::sign(key, msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    let s = SecretBytes::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    s
}

/// `KDF_RK`: the next root key and a new chain key from a DH output.
pub(crate) fn root_step(root: &SymmetricKey, dh: &[u8]) -> Result<(SymmetricKey, SymmetricKey)> {
    let out: SecretBytes<64> = kdf::derive(KdfLabel::RatchetRoot, root.expose(), dh, &[])?;
    Ok(split2(&out))
}

/// The epoch key of epoch `epoch` from the previous one and the epoch's KEM shared secret.
pub(crate) fn epoch_step(prev: &SymmetricKey, ss: &[u8], epoch: u32) -> Result<SymmetricKey> {
    kdf::derive(
        KdfLabel::PqEpoch,
        prev.expose(),
        ss,
        &[&epoch.to_be_bytes()],
    )
}

/// The AEAD key of a message: `mk` itself, or `mk` keyed into the epoch key.
pub(crate) fn message_key(mk: SymmetricKey, epoch_key: Option<&SymmetricKey>) -> SymmetricKey {
    match epoch_key {
        None => mk,
        Some(pq) => {
            let k = hmac::Key::new(hmac::HMAC_SHA256, pq.expose());
            let mut ctx = hmac::Context::with_key(&k);
            ctx.update(&[0x03]);
            ctx.update(mk.expose());
            let tag = ctx.sign();
            let mut out = [0u8; 32];
            out.copy_from_slice(tag.as_ref());
            let s = SecretBytes::new(out);
            zeroize::Zeroize::zeroize(&mut out);
            s
        }
    }
}

/// Splits 64 secret bytes into two 32-byte keys.
pub(crate) fn split2(b: &SecretBytes<64>) -> (SymmetricKey, SymmetricKey) {
    let (a, c) = b.expose().split_at(32);
    (key32(a), key32(c))
}

/// Copies 32 bytes of a secret into a key.
pub(crate) fn key32(b: &[u8]) -> SymmetricKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[..32]);
    let s = SecretBytes::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_matches_hmac_definition() {
        use hmac_ref::Mac;
        type H = hmac_ref::Hmac<sha2::Sha256>;
        let ck = SecretBytes::new([0x42; 32]);
        let mut c = Chain::new(SecretBytes::new([0x42; 32]));
        let mk = c.step();
        let mut m = H::new_from_slice(ck.expose()).unwrap();
        m.update(&[1]);
        assert_eq!(mk.expose()[..], m.finalize().into_bytes()[..]);
        let mut m = H::new_from_slice(ck.expose()).unwrap();
        m.update(&[2]);
        assert_eq!(c.key.expose()[..], m.finalize().into_bytes()[..]);
        assert_eq!(c.n, 1);
    }
}
