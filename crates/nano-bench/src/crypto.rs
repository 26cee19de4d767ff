//! `nano-bench crypto`: the guide's table of crypto operations per second, measured here.
//!
//! Definitions (per mode): keygen = one full key set (KEM + signature key pair); key exchange =
//! encapsulate + decapsulate; sign and verify over 1 KiB (through the mode's domain-separated
//! construction); symmetric = AEAD seal of 1 KiB with the AEAD this CPU prefers.

use std::collections::BTreeMap;

use anyhow::Context;
use nano_crypto::primitives::{ed25519, mldsa, mlkem, x25519, xwing};
use nano_crypto::sign::SigContext;
use nano_crypto::{
    AeadId, AeadKey, CryptoAcceleration, CryptoMode, KemKeyPair, OsRng, SigningKeyPair,
    SymmetricKey, VerificationTask,
};
use serde::Serialize;

use crate::measure::{self, Budget};

/// Arguments of `nano-bench crypto`.
#[derive(Debug, clap::Args)]
pub(crate) struct CryptoArgs {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Short measurement windows (about 10× faster, much noisier): a smoke run, not a result.
    #[arg(long)]
    quick: bool,
    /// Repeat the whole measurement this many times and report each figure's median across
    /// runs (a shared machine's speed drifts between runs; the median is the honest figure).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=15))]
    runs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Keygen,
    KeyExchange,
    Sign,
    Verify,
    Symmetric,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Keygen,
        Op::KeyExchange,
        Op::Sign,
        Op::Verify,
        Op::Symmetric,
    ];

    fn key(self) -> &'static str {
        match self {
            Op::Keygen => "keygen",
            Op::KeyExchange => "key_exchange",
            Op::Sign => "sign",
            Op::Verify => "verify",
            Op::Symmetric => "symmetric",
        }
    }

    fn row(self) -> &'static str {
        match self {
            Op::Keygen => "Key Generation",
            Op::KeyExchange => "Key Exchange",
            Op::Sign => "Digital Signature",
            Op::Verify => "Signature Verification",
            Op::Symmetric => "Symmetric Encryption",
        }
    }

    /// The guide's figure (ops/s) for this operation and mode.
    fn guide(self, mode: CryptoMode) -> f64 {
        let [c, h, q] = match self {
            Op::Keygen => [10_000.0, 2_500.0, 1_200.0],
            Op::KeyExchange => [50_000.0, 15_000.0, 8_000.0],
            Op::Sign => [25_000.0, 8_000.0, 4_000.0],
            Op::Verify => [80_000.0, 25_000.0, 12_000.0],
            Op::Symmetric => [2_000_000.0; 3],
        };
        match mode {
            CryptoMode::Classical => c,
            CryptoMode::Hybrid => h,
            CryptoMode::Quantum => q,
        }
    }
}

type Bench = Box<dyn FnMut() -> (u64, ()) + Send>;

/// Keeps a result alive so the optimizer cannot drop the work that made it.
fn bb<T>(v: T) {
    std::hint::black_box(v);
}

const KIB: [u8; 1024] = [0x5a; 1024];

fn table_op(op: Op, mode: CryptoMode, aead: AeadId) -> anyhow::Result<Bench> {
    let mut rng = OsRng;
    Ok(match op {
        Op::Keygen => Box::new(move || {
            let k = KemKeyPair::generate(mode, &mut OsRng);
            let s = SigningKeyPair::generate(mode, &mut OsRng);
            (u64::from(k.is_ok() && s.is_ok()), ())
        }),
        Op::KeyExchange => {
            let kp = KemKeyPair::generate(mode, &mut rng)?;
            let pk = kp.public_key();
            Box::new(move || {
                let ok = pk
                    .encapsulate(&mut OsRng)
                    .and_then(|(ct, _)| kp.decapsulate(&ct))
                    .is_ok();
                (u64::from(ok), ())
            })
        }
        Op::Sign => {
            let kp = SigningKeyPair::generate(mode, &mut rng)?;
            Box::new(move || {
                let ok = kp.sign(SigContext::Envelope, &KIB, &mut OsRng).is_ok();
                (u64::from(ok), ())
            })
        }
        Op::Verify => {
            let kp = SigningKeyPair::generate(mode, &mut rng)?;
            let sig = kp.sign(SigContext::Envelope, &KIB, &mut rng)?;
            let vk = kp.verifying_key();
            Box::new(move || {
                let ok = vk.verify(SigContext::Envelope, &KIB, &sig).is_ok();
                (u64::from(ok), ())
            })
        }
        Op::Symmetric => {
            let key = AeadKey::new(aead, &SymmetricKey::new([7; 32]))?;
            let mut nonce = 0u64;
            Box::new(move || {
                nonce += 1;
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&nonce.to_be_bytes());
                (u64::from(key.seal(&n, b"", &KIB).is_ok()), ())
            })
        }
    })
}

/// A raw primitive: name, the best figure in `perf/crypto-baseline.md` (µs/op), and the bench.
struct Primitive {
    name: &'static str,
    baseline_us: f64,
    make: fn() -> anyhow::Result<Bench>,
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

fn primitives() -> Vec<Primitive> {
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
                    let k: nano_crypto::SecretBytes<32> = nano_crypto::kdf::derive(
                        nano_crypto::kdf::KdfLabel::ChannelKey,
                        b"salt",
                        &[1u8; 32],
                        &[b"info"],
                    );
                    (1, bb(k))
                }))
            },
        },
    ]);
    all
}

fn aead_bench(id: AeadId) -> anyhow::Result<Bench> {
    table_op(Op::Symmetric, CryptoMode::Hybrid, id)
}

type ModeTable = BTreeMap<&'static str, BTreeMap<&'static str, u64>>;

#[derive(Debug, Serialize)]
struct Report {
    single_core: ModeTable,
    all_cores: ModeTable,
    primitives: BTreeMap<&'static str, u64>,
}

fn measure_once(budget: Budget, aead: AeadId) -> anyhow::Result<Report> {
    let single_core = measure_table(budget, aead, false)?;
    let all_cores = measure_table(budget, aead, true)?;
    let mut primitives = BTreeMap::new();
    for p in self::primitives() {
        let mut bench = (p.make)().with_context(|| p.name)?;
        let rate = measure::ops_per_sec(budget, &mut bench);
        primitives.insert(p.name, rate.round() as u64);
    }
    Ok(Report {
        single_core,
        all_cores,
        primitives,
    })
}

/// Each figure's median across `reports` (all have the same keys).
fn median_report(reports: &[Report]) -> Report {
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let table = |pick: fn(&Report) -> &ModeTable| -> ModeTable {
        let first = reports.first().map(pick).cloned().unwrap_or_default();
        first
            .into_iter()
            .map(|(mode, row)| {
                let row = row
                    .into_keys()
                    .map(|op| {
                        let vals = reports.iter().map(|r| pick(r)[mode][op]).collect();
                        (op, median(vals))
                    })
                    .collect();
                (mode, row)
            })
            .collect()
    };
    let primitives = reports
        .first()
        .map(|r| r.primitives.keys().copied().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            (
                name,
                median(reports.iter().map(|r| r.primitives[name]).collect()),
            )
        })
        .collect();
    Report {
        single_core: table(|r| &r.single_core),
        all_cores: table(|r| &r.all_cores),
        primitives,
    }
}

fn measure_table(budget: Budget, aead: AeadId, all_cores: bool) -> anyhow::Result<ModeTable> {
    let mut table = ModeTable::new();
    for mode in CryptoMode::ALL {
        let row = table.entry(mode.as_str()).or_default();
        for op in Op::ALL {
            // Build once up front so setup errors surface here, not inside worker threads.
            let mut bench =
                table_op(op, mode, aead).with_context(|| format!("{mode} {}", op.key()))?;
            let rate = if all_cores {
                measure::ops_per_sec_all_cores(budget, || {
                    table_op(op, mode, aead).unwrap_or_else(|_| Box::new(|| (0, ())))
                })
            } else {
                measure::ops_per_sec(budget, &mut bench)
            };
            row.insert(op.key(), rate.round() as u64);
        }
    }
    Ok(table)
}

pub(crate) fn run(args: &CryptoArgs) -> anyhow::Result<()> {
    let budget = if args.quick {
        Budget::quick()
    } else {
        Budget::full()
    };
    let accel = CryptoAcceleration::detect();
    let aead = accel.preferred_aead();
    let reports = (0..args.runs)
        .map(|_| measure_once(budget, aead))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = median_report(&reports);
    let prims: Vec<(&str, f64, f64)> = primitives()
        .iter()
        .map(|p| {
            let rate = report.primitives.get(p.name).copied().unwrap_or(0) as f64;
            (p.name, p.baseline_us, rate)
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "nano-bench crypto — ops/s (median of 20 ms batches; median of {} run(s)); AEAD {aead}; {accel:?}",
        args.runs
    );
    print_table("One core", &report.single_core);
    print_table(&format!("All cores ({cores})"), &report.all_cores);
    println!("\nRaw primitives, one core (baseline = best library in perf/crypto-baseline.md)");
    println!(
        "{:<34} {:>12} {:>10} {:>12} {:>8}",
        "primitive", "ops/s", "µs/op", "baseline µs", "ratio"
    );
    for (name, base, rate) in &prims {
        let us = 1e6 / rate;
        println!(
            "{name:<34} {:>12.0} {:>10.2} {:>12.2} {:>7.2}×",
            rate,
            us,
            base,
            us / base
        );
    }
    Ok(())
}

fn print_table(title: &str, t: &ModeTable) {
    println!("\n{title}: ours (guide, ours/guide)");
    println!(
        "{:<24} {:>30} {:>30} {:>30}",
        "Algorithm", "Classical", "Hybrid", "Quantum-Only"
    );
    for op in Op::ALL {
        let cells: Vec<String> = CryptoMode::ALL
            .iter()
            .map(|m| {
                let ours = t
                    .get(m.as_str())
                    .and_then(|r| r.get(op.key()))
                    .copied()
                    .unwrap_or(0);
                let guide = op.guide(*m);
                format!("{ours} ({guide:.0}, {:.2}×)", ours as f64 / guide)
            })
            .collect();
        println!(
            "{:<24} {:>30} {:>30} {:>30}",
            op.row(),
            cells[0],
            cells[1],
            cells[2]
        );
    }
}
