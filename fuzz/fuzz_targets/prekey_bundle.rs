//! Prekey bundle, signed prekeys, one-time prekey and inclusion decoding and verification.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::session::{OneTimeInclusion, OneTimePrekey, PrekeyBundle, SignedPrekeys};

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
    }
    // The first two bytes pick a batch size; the rest is an inclusion in it.
    if let [hi, lo, rest @ ..] = data
        && let Ok(i) = OneTimeInclusion::from_bytes(rest, u16::from_be_bytes([*hi, *lo]))
    {
        assert_eq!(i.to_bytes(), rest);
    }
});
