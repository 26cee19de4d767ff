//! Sessions shared by the session fuzz targets (each target reads only some fields).
#![allow(dead_code)]

use std::sync::OnceLock;

use nano_crypto::CryptoMode;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::common::pair;

/// Bob's prekeys and an established (Alice, Bob) session for `mode`, built once per mode from
/// a fixed seed. Alice has already sent Bob a few messages, so Bob's state is mid-conversation.
pub struct Sessions {
    pub prekeys: nano_crypto::PrekeySecrets,
    pub bob: nano_crypto::Session,
    pub handshake: Vec<u8>,
}

pub fn sessions(mode: CryptoMode) -> &'static std::sync::Mutex<Sessions> {
    use nano_crypto::session::{
        OneTimePrekeys, PrekeySecrets, Session, SignedPrekeySecrets,
    };
    static S: [OnceLock<std::sync::Mutex<Sessions>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = &S[usize::from(mode.to_byte() - 1)];
    slot.get_or_init(|| {
        let (alice, bob) = pair();
        let mut r = ChaCha20Rng::seed_from_u64(0x5e55 + u64::from(mode.to_byte()));
        let built = (|| -> Result<Sessions, nano_crypto::SessionError> {
            let signed = SignedPrekeySecrets::generate(mode, 1, &mut r)?;
            let batch = OneTimePrekeys::generate(mode, 10, 4, &mut r)?;
            let mut prekeys = PrekeySecrets::new(signed, batch)?;
            let bundle = prekeys.bundle(bob, false, &mut r)?;
            let aead = nano_crypto::AeadId::ChaCha20Poly1305;
            let (mut a, handshake) =
                Session::initiate(alice, bob.public_bundle(), &bundle, aead, b"hi", &mut r)?;
            let mut b =
                Session::respond(bob, &mut prekeys, alice.public_bundle(), &handshake, &mut r)?
                    .session;
            for _ in 0..3 {
                let m = a.encrypt(b"warm", &mut r)?;
                b.decrypt(&m, &mut r)?;
            }
            Ok(Sessions {
                prekeys,
                bob: b,
                handshake,
            })
        })();
        match built {
            Ok(s) => std::sync::Mutex::new(s),
            Err(_) => std::process::abort(),
        }
    })
}
