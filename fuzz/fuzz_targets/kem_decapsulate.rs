//! KEM ciphertext and public-key decoding for every mode; first byte picks the mode.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::{CryptoMode, KemCiphertext, KemPublicKey};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Ok(mode) = CryptoMode::from_byte(m) else {
        return;
    };
    let (_, bob) = common::pair();
    if let (Ok(ct), Some(kem)) = (KemCiphertext::from_bytes(mode, rest), bob.kem(mode)) {
        let _ = kem.decapsulate(&ct);
    }
    let _ = KemPublicKey::from_bytes(mode, rest);
});
