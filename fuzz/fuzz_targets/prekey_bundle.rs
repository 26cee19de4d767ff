//! Prekey bundle, signed prekeys and one-time prekey decoding and verification.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::session::{OneTimePrekey, PrekeyBundle, SignedPrekeys};

fuzz_target!(|data: &[u8]| {
    let (_, bob) = common::pair();
    if let Ok(b) = PrekeyBundle::from_bytes(data) {
        // A bundle that decodes re-encodes to the same bytes.
        assert_eq!(b.to_bytes(), data);
        let _ = b.verify(bob.public_bundle());
    }
    if let Ok(s) = SignedPrekeys::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
        let _ = s.verify(bob.public_bundle());
    }
    if let Ok(o) = OneTimePrekey::from_bytes(data) {
        assert_eq!(o.to_bytes(), data);
        let _ = o.verify(bob.public_bundle());
    }
});
