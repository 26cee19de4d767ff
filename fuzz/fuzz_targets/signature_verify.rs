//! Signature and verification-key decoding and verification for every mode.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::sign::SigContext;
use nano_crypto::{CryptoMode, Signature, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Ok(mode) = CryptoMode::from_byte(m) else {
        return;
    };
    let (alice, _) = common::pair();
    if let (Ok(sig), Some(vk)) = (
        Signature::from_bytes(mode, rest),
        alice.public_bundle().verifying_key(mode),
    ) {
        assert!(vk.verify(SigContext::Envelope, b"fuzz", &sig).is_err());
    }
    let _ = VerifyingKey::from_bytes(mode, rest);
});
