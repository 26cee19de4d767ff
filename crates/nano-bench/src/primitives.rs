//! The raw primitive figures printed beneath the guide's table: each vetted primitive through
//! its thin wrapper in `nano_crypto::primitives`, beside the best figure for it in
//! `shared/perf/crypto-baseline.md`.

use nano_crypto::primitives::{ed25519, mldsa, mlkem, x25519, xwing};
use nano_crypto::sign::SigContext;
use nano_crypto::{AeadId, CryptoMode, OsRng, SigningKeyPair, VerificationTask};

use crate::crypto::{Bench, KIB, Op, bb, table_op};

/// A raw primitive: name, the best figure in `perf/crypto-baseline.md` (µs/op), and the bench.
pub(crate) struct Primitive {
    pub(crate) name: &'static str,
    pub(crate) baseline_us: f64,
    pub(crate) make: fn() -> anyhow::Result<Bench>,
}

fn seed<const N: usize>() -> [u8; N] {
    let mut s = [0u8; N];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut s);
    s
}

/// Keygen, encapsulation and decapsulation of one ML-KEM parameter set.
macro_rules! kem_primitives {
    ($kp:ty, $name:literal, $kg:expr, $enc:expr, $dec:expr) => {
        [
            Primitive {
                name: concat!($name, "_keygen"),
                baseline_us: $kg,
                make: || Ok(Box::new(|| (1, bb(<$kp>::from_seed(&seed()))))),
            },
            Primitive {
                name: concat!($name, "_encaps"),
                baseline_us: $enc,
                make: || {
                    let pk = <$kp>::from_seed(&seed()).public_key().clone();
                    Ok(Box::new(move || (1, bb(pk.encapsulate_derand(&seed())))))
                },
            },
            Primitive {
                name: concat!($name, "_decaps"),
                baseline_us: $dec,
                make: || {
                    let k = <$kp>::from_seed(&seed());
                    let (ct, _) = k.public_key().encapsulate_derand(&seed());
                    Ok(Box::new(move || {
                        (u64::from(k.decapsulate(&ct).is_ok()), ())
                    }))
                },
            },
        ]
    };
}

/// Keygen, signing and verification (1 KiB) of one ML-DSA parameter set.
macro_rules! dsa_primitives {
    ($kp:ty, $name:literal, $kg:expr, $sign:expr, $verify:expr) => {
        [
            Primitive {
                name: concat!($name, "_keygen"),
                baseline_us: $kg,
                make: || Ok(Box::new(|| (1, bb(<$kp>::from_seed(&seed()))))),
            },
            Primitive {
                name: concat!($name, "_sign_1k"),
                baseline_us: $sign,
                make: || {
                    let k = <$kp>::from_seed(&seed());
                    Ok(Box::new(move || {
                        (u64::from(k.sign(&KIB, b"", &seed()).is_ok()), ())
                    }))
                },
            },
            Primitive {
                name: concat!($name, "_verify_1k"),
                baseline_us: $verify,
                make: || {
                    let k = <$kp>::from_seed(&seed());
                    let s = k.sign(&KIB, b"", &seed())?;
                    let pk = k.public_key().clone();
                    Ok(Box::new(move || {
                        (u64::from(pk.verify(&KIB, b"", &s).is_ok()), ())
                    }))
                },
            },
        ]
    };
}

pub(crate) fn primitives() -> Vec<Primitive> {
    let mut all = vec![
        Primitive {
            name: "x25519_keygen",
            baseline_us: 5.07,
            make: || {
                Ok(Box::new(|| {
                    (
                        u64::from(x25519::X25519KeyPair::from_secret(&seed()).is_ok()),
                        (),
                    )
                }))
            },
        },
        Primitive {
            name: "x25519_dh",
            baseline_us: 16.3,
            make: || {
                let a = x25519::X25519KeyPair::from_secret(&seed())?;
                let b = *x25519::X25519KeyPair::from_secret(&seed())?.public_key();
                Ok(Box::new(move || {
                    (u64::from(a.diffie_hellman(&b).is_ok()), ())
                }))
            },
        },
        Primitive {
            name: "ed25519_keygen",
            baseline_us: 4.93,
            make: || {
                Ok(Box::new(|| {
                    (
                        u64::from(ed25519::Ed25519KeyPair::from_seed(&seed()).is_ok()),
                        (),
                    )
                }))
            },
        },
        Primitive {
            name: "ed25519_sign_1k",
            baseline_us: 7.93,
            make: || {
                let k = ed25519::Ed25519KeyPair::from_seed(&seed())?;
                Ok(Box::new(move || (1, bb(k.sign(&KIB)))))
            },
        },
        Primitive {
            name: "ed25519_verify_1k",
            baseline_us: 15.5,
            make: || {
                let k = ed25519::Ed25519KeyPair::from_seed(&seed())?;
                let s = k.sign(&KIB);
                let pk = k.public_key().clone();
                Ok(Box::new(move || {
                    (u64::from(pk.verify(&KIB, &s).is_ok()), ())
                }))
            },
        },
        Primitive {
            name: "ed25519_batch_verify_per_sig_64",
            baseline_us: 9.6,
            make: || {
                let tasks = (0..64u64)
                    .map(|i| {
                        let k = SigningKeyPair::generate(CryptoMode::Classical, &mut OsRng)?;
                        let s = k.sign(SigContext::Envelope, &KIB, &mut OsRng)?;
                        Ok(VerificationTask::new(
                            i,
                            &k.verifying_key(),
                            SigContext::Envelope,
                            &KIB,
                            &s,
                        )?)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Box::new(move || {
                    let r = nano_crypto::batch::verify_all(&tasks);
                    (r.iter().filter(|r| r.outcome.is_ok()).count() as u64, ())
                }))
            },
        },
    ];
    all.extend(kem_primitives!(
        mlkem::MlKem768KeyPair,
        "mlkem768",
        9.2,
        9.0,
        9.6
    ));
    all.extend(kem_primitives!(
        mlkem::MlKem1024KeyPair,
        "mlkem1024",
        12.6,
        12.2,
        13.3
    ));
    all.extend([
        Primitive {
            name: "xwing_keygen",
            baseline_us: 41.7,
            make: || {
                Ok(Box::new(|| {
                    (
                        u64::from(xwing::XWingKeyPair::from_seed(&seed()).is_ok()),
                        (),
                    )
                }))
            },
        },
        Primitive {
            name: "xwing_encaps",
            baseline_us: 30.0,
            make: || {
                let k = xwing::XWingKeyPair::from_seed(&seed())?;
                let pk = k.public_key().clone();
                Ok(Box::new(move || {
                    (u64::from(pk.encapsulate_derand(&seed()).is_ok()), ())
                }))
            },
        },
        Primitive {
            name: "xwing_decaps",
            baseline_us: 28.0,
            make: || {
                let k = xwing::XWingKeyPair::from_seed(&seed())?;
                let (ct, _) = k.public_key().encapsulate_derand(&seed())?;
                Ok(Box::new(move || {
                    (u64::from(k.decapsulate(&ct).is_ok()), ())
                }))
            },
        },
    ]);
    all.extend(dsa_primitives!(
        mldsa::MlDsa65KeyPair,
        "mldsa65",
        27.3,
        85.0,
        31.8
    ));
    all.extend(dsa_primitives!(
        mldsa::MlDsa87KeyPair,
        "mldsa87",
        47.6,
        100.1,
        52.5
    ));
    all.extend([
        Primitive {
            name: "chacha20poly1305_seal_1k",
            baseline_us: 0.52,
            make: || aead_bench(AeadId::ChaCha20Poly1305),
        },
        Primitive {
            name: "aes256gcm_seal_1k",
            baseline_us: 0.14,
            make: || aead_bench(AeadId::Aes256Gcm),
        },
        Primitive {
            name: "sha3_256_1k",
            baseline_us: 1.86,
            make: || {
                Ok(Box::new(|| {
                    use sha3::Digest;
                    (1, bb(sha3::Sha3_256::digest(KIB)))
                }))
            },
        },
        Primitive {
            name: "hkdf_sha256_32",
            baseline_us: 0.31,
            make: || {
                Ok(Box::new(|| {
                    let k: nano_crypto::Result<nano_crypto::SecretBytes<32>> =
                        nano_crypto::kdf::derive(
                            nano_crypto::kdf::KdfLabel::ChannelKey,
                            b"salt",
                            &[1u8; 32],
                            &[b"info"],
                        );
                    (1, bb(k.is_ok()))
                }))
            },
        },
    ]);
    all.extend(crate::wrappers::primitives());
    all
}

fn aead_bench(id: AeadId) -> anyhow::Result<Bench> {
    table_op(Op::Symmetric, CryptoMode::Hybrid, id)
}
