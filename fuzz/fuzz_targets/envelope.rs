//! Envelope decoding and opening: any bytes must yield an error or a valid plaintext, never a panic.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (alice, bob) = common::pair();
    if let Ok(env) = nano_crypto::Envelope::from_bytes(data) {
        let _ = env.header().to_bytes();
        let _ = env.open(bob, alice.public_bundle());
        let _ = env.verification_task(alice.public_bundle(), 0);
    }
});
