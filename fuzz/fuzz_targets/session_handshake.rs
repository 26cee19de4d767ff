//! Session handshake parsing and responding: any bytes yield an error or a session, never a
//! panic, and a rejected handshake consumes no one-time prekey.
#![no_main]

mod common;
mod session_common;

use libfuzzer_sys::fuzz_target;
use nano_crypto::{CryptoMode, Session};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let (alice, bob) = common::pair();
    // Byte 1 is the mode byte of a handshake or message: pick the session of that mode.
    let mode = CryptoMode::ALL[usize::from(data.get(1).copied().unwrap_or(1).wrapping_sub(1) % 3)];
    let Ok(mut s) = session_common::sessions(mode).lock() else {
        return;
    };
    let before = s.prekeys.one_time().len();
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let result = Session::respond(bob, &mut s.prekeys, alice.public_bundle(), data, &mut r);
    if result.is_err() {
        assert_eq!(s.prekeys.one_time().len(), before);
    }
    // Mutations of a real handshake reach deeper than random bytes.
    let mut hs = s.handshake.clone();
    if !hs.is_empty() {
        for (i, b) in data.iter().enumerate().take(8) {
            let at = (usize::from(*b) * 131 + i * 977) % hs.len();
            hs[at] ^= b.rotate_left(i as u32) | 1;
        }
        let _ = Session::respond(bob, &mut s.prekeys, alice.public_bundle(), &hs, &mut r);
    }
});
