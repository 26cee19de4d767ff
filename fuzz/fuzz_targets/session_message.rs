//! Session message decryption and session state decoding: any bytes yield an error or a
//! plaintext, never a panic, and a rejected message leaves the state unchanged.
#![no_main]

mod common;
mod session_common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::{CryptoMode, Session};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Session::from_bytes(data) {
        // A state that decodes re-encodes to the same bytes.
        assert_eq!(&*s.to_bytes(), data);
    }
    // Byte 1 is the mode byte of a handshake or message: pick the session of that mode.
    let mode = CryptoMode::ALL[usize::from(data.get(1).copied().unwrap_or(1).wrapping_sub(1) % 3)];
    let Ok(mut s) = session_common::sessions(mode).lock() else {
        return;
    };
    let before = s.bob.to_bytes();
    let mut r = ChaCha20Rng::seed_from_u64(2);
    if s.bob.decrypt(data, &mut r).is_err() {
        assert_eq!(*s.bob.to_bytes(), *before);
    }
});
