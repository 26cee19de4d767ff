//! The hot-path operations of a session through our types, beside the same call made directly
//! on the library that implements it, measured in the same run. A ratio (library µs / ours µs)
//! near 1.00 means the wrapper costs nothing measurable; the target is at least 0.90.
//!
//! | pair | ours | library |
//! |---|---|---|
//! | X25519 ratchet key | `EphemeralX25519::from_secret` (secret drawn from [`SessionRng`]) | aws-lc-rs `PrivateKey::generate` + `compute_public_key` |
//! | ML-KEM-768 / -1024 ratchet key | `generate_expanded` (seed from [`SessionRng`]) | libcrux `generate_key_pair` (fixed seed) |
//! | AEAD seal 1 KiB | `AeadKey::seal_in_place` into a reused buffer | aws-lc-rs `seal_in_place_separate_tag` on a reused buffer |
//! | per-message key + seal 1 KiB | `AeadKey::new` + `seal_in_place` | `LessSafeKey::new` + `seal_in_place_separate_tag` |

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{PrivateKey, X25519};
use nano_crypto::primitives::mlkem::{MlKem768KeyPair, MlKem1024KeyPair};
use nano_crypto::primitives::x25519::EphemeralX25519;
use nano_crypto::session::{SessionRng, session_rng};
use nano_crypto::{AeadId, AeadKey, SymmetricKey};
use rand_core::RngCore;

use crate::crypto::{Bench, KIB, bb};
use crate::primitives::Primitive;

/// Pairs of primitive names (ours, library) printed as the wrapper-overhead table.
pub(crate) const PAIRS: [(&str, &str, &str); 5] = [
    (
        "X25519 ratchet key",
        "ours_x25519_ratchet_keygen",
        "lib_x25519_keygen",
    ),
    (
        "ML-KEM-768 ratchet key",
        "ours_mlkem768_ratchet_keygen",
        "lib_mlkem768_keygen",
    ),
    (
        "ML-KEM-1024 ratchet key",
        "ours_mlkem1024_ratchet_keygen",
        "lib_mlkem1024_keygen",
    ),
    (
        "AEAD seal 1 KiB",
        "ours_aead_seal_in_place_1k",
        "lib_aead_seal_in_place_1k",
    ),
    (
        "key + AEAD seal 1 KiB",
        "ours_aead_key_and_seal_1k",
        "lib_aead_key_and_seal_1k",
    ),
];

fn rng() -> anyhow::Result<SessionRng> {
    Ok(session_rng()?)
}

fn alg(id: AeadId) -> &'static aws_lc_rs::aead::Algorithm {
    match id {
        AeadId::Aes256Gcm => &AES_256_GCM,
        _ => &CHACHA20_POLY1305,
    }
}

fn preferred() -> AeadId {
    nano_crypto::CryptoAcceleration::detect().preferred_aead()
}

/// The rows, in the order of [`PAIRS`] (ours, library).
pub(crate) fn primitives() -> Vec<Primitive> {
    vec![
        Primitive {
            name: "ours_x25519_ratchet_keygen",
            baseline_us: 0.0,
            make: || {
                let mut r = rng()?;
                Ok(Box::new(move || {
                    let mut s = [0u8; 32];
                    r.fill_bytes(&mut s);
                    (u64::from(EphemeralX25519::from_secret(&s).is_ok()), ())
                }) as Bench)
            },
        },
        Primitive {
            name: "lib_x25519_keygen",
            baseline_us: 0.0,
            make: || {
                Ok(Box::new(|| {
                    let ok = PrivateKey::generate(&X25519)
                        .and_then(|k| k.compute_public_key().map(bb))
                        .is_ok();
                    (u64::from(ok), ())
                }))
            },
        },
        Primitive {
            name: "ours_mlkem768_ratchet_keygen",
            baseline_us: 0.0,
            make: || {
                let mut r = rng()?;
                Ok(Box::new(move || {
                    let mut s = [0u8; 64];
                    r.fill_bytes(&mut s);
                    (1, bb(MlKem768KeyPair::generate_expanded(&s)))
                }))
            },
        },
        Primitive {
            name: "lib_mlkem768_keygen",
            baseline_us: 0.0,
            make: || {
                Ok(Box::new(|| {
                    (
                        1,
                        bb(libcrux_ml_kem::mlkem768::generate_key_pair([7u8; 64])),
                    )
                }))
            },
        },
        Primitive {
            name: "ours_mlkem1024_ratchet_keygen",
            baseline_us: 0.0,
            make: || {
                let mut r = rng()?;
                Ok(Box::new(move || {
                    let mut s = [0u8; 64];
                    r.fill_bytes(&mut s);
                    (1, bb(MlKem1024KeyPair::generate_expanded(&s)))
                }))
            },
        },
        Primitive {
            name: "lib_mlkem1024_keygen",
            baseline_us: 0.0,
            make: || {
                Ok(Box::new(|| {
                    (
                        1,
                        bb(libcrux_ml_kem::mlkem1024::generate_key_pair([7u8; 64])),
                    )
                }))
            },
        },
        Primitive {
            name: "ours_aead_seal_in_place_1k",
            baseline_us: 0.0,
            make: || {
                let key = AeadKey::new(preferred(), &SymmetricKey::new([7; 32]))?;
                let mut buf = Vec::with_capacity(1024 + 16);
                Ok(Box::new(move || {
                    buf.clear();
                    buf.extend_from_slice(&KIB);
                    (
                        u64::from(key.seal_in_place(&[0; 12], &mut buf, 0).is_ok()),
                        (),
                    )
                }))
            },
        },
        Primitive {
            name: "lib_aead_seal_in_place_1k",
            baseline_us: 0.0,
            make: || {
                let key = LessSafeKey::new(
                    UnboundKey::new(alg(preferred()), &[7; 32])
                        .map_err(|_| anyhow::anyhow!("aead key"))?,
                );
                let mut buf = KIB;
                Ok(Box::new(move || {
                    // The same 1 KiB copy into the buffer as ours does.
                    buf.copy_from_slice(&KIB);
                    let tag = key.seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([0; 12]),
                        Aad::empty(),
                        &mut buf,
                    );
                    (u64::from(tag.is_ok()), ())
                }))
            },
        },
        Primitive {
            name: "ours_aead_key_and_seal_1k",
            baseline_us: 0.0,
            make: || {
                let id = preferred();
                let mut buf = Vec::with_capacity(1024 + 16);
                Ok(Box::new(move || {
                    buf.clear();
                    buf.extend_from_slice(&KIB);
                    let ok = AeadKey::new(id, &SymmetricKey::new([7; 32]))
                        .and_then(|k| k.seal_in_place(&[0; 12], &mut buf, 0))
                        .is_ok();
                    (u64::from(ok), ())
                }))
            },
        },
        Primitive {
            name: "lib_aead_key_and_seal_1k",
            baseline_us: 0.0,
            make: || {
                let a = alg(preferred());
                let mut buf = KIB;
                Ok(Box::new(move || {
                    buf.copy_from_slice(&KIB);
                    let ok = UnboundKey::new(a, &[7; 32]).is_ok_and(|k| {
                        LessSafeKey::new(k)
                            .seal_in_place_separate_tag(
                                Nonce::assume_unique_for_key([0; 12]),
                                Aad::empty(),
                                &mut buf,
                            )
                            .is_ok()
                    });
                    (u64::from(ok), ())
                }))
            },
        },
    ]
}
