//! Fixed identities shared by the fuzz targets (generated once from a fixed seed).

use std::sync::OnceLock;

use nano_crypto::{CryptoMode, Identity};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn pair() -> &'static (Identity, Identity) {
    static P: OnceLock<(Identity, Identity)> = OnceLock::new();
    P.get_or_init(|| {
        let mut r = ChaCha20Rng::seed_from_u64(0xf022);
        let a = Identity::generate(CryptoMode::Classical, &mut r);
        let b = Identity::generate(CryptoMode::Classical, &mut r);
        match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            _ => std::process::abort(),
        }
    })
}
