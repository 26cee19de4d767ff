//! Public bundle decoding (including proof-of-possession checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = nano_crypto::PublicBundle::from_bytes(data) {
        // A bundle that decodes must re-encode to the same bytes.
        assert_eq!(b.to_bytes(), data);
    }
});
