//! The channel key of a relay `key_exchange`, and its key confirmation.
//!
//! The client encapsulates to the relay's signed ephemeral KEM key; both sides derive
//! `HKDF-SHA256(salt = "", IKM = shared secret, info = "nano-messenger/v1 channel-key" ‖ mode (1)
//! ‖ key_id (8, big-endian) ‖ public key ‖ ciphertext)`, so the key is bound to the exact
//! transcript. The relay proves it holds the same key with
//! `HMAC-SHA256(channel key, "nano-messenger/v1 kex-confirm" ‖ key_id (8))`, compared in
//! constant time by the client.

use aws_lc_rs::hmac;

use crate::kdf::{KdfLabel, derive};
use crate::{
    CryptoError, CryptoMode, KemCiphertext, KemPublicKey, Result, SharedSecret, SymmetricKey,
};

/// The channel key for (`mode`, `key_id`, `public_key`, `ciphertext`) from the KEM secret.
///
/// # Errors
/// [`CryptoError::Internal`] if HKDF fails.
pub fn channel_key(
    shared: &SharedSecret,
    mode: CryptoMode,
    key_id: u64,
    public_key: &KemPublicKey,
    ciphertext: &KemCiphertext,
) -> Result<SymmetricKey> {
    derive(
        KdfLabel::ChannelKey,
        &[],
        shared.expose(),
        &[
            &[mode.to_byte()],
            &key_id.to_be_bytes(),
            public_key.as_bytes(),
            ciphertext.as_bytes(),
        ],
    )
}

fn confirm_input(key_id: u64) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 kex-confirm".to_vec();
    out.extend_from_slice(&key_id.to_be_bytes());
    out
}

/// The relay's confirmation that it derived `key`.
pub fn confirmation(key: &SymmetricKey, key_id: u64) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let tag = hmac::sign(&k, &confirm_input(key_id));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks a confirmation in constant time.
pub fn verify_confirmation(
    key: &SymmetricKey,
    key_id: u64,
    confirmation: &[u8],
) -> Result<(), CryptoError> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    hmac::verify(&k, &confirm_input(key_id), confirmation).map_err(|_| CryptoError::BadSignature)
}
