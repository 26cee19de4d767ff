//! Secret identity decoding (keystore contents).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    if let Ok(id) = nano_crypto::Identity::from_secret_bytes(data, &mut r) {
        assert_eq!(&*id.to_secret_bytes(), data);
    }
});
