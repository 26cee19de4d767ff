//! `nano-bench crypto`: the guide's table of crypto operations per second, measured here.
//!
//! Definitions (per mode): keygen = one full key set (KEM + signature key pair); key exchange =
//! encapsulate + decapsulate; sign and verify over 1 KiB (through the mode's domain-separated
//! construction); symmetric = AEAD seal of 1 KiB with the AEAD this CPU prefers. Each mode's
//! row also carries `session_handshake`, `session_encrypt` and `session_decrypt`
//! (definitions in `sessions.rs`).

use std::collections::BTreeMap;

use anyhow::Context;
use nano_crypto::sign::SigContext;
use nano_crypto::{
    AeadId, AeadKey, CryptoAcceleration, CryptoMode, KemKeyPair, OsRng, SigningKeyPair,
    SymmetricKey,
};
use serde::Serialize;

use crate::measure::{self, Budget};
use crate::primitives::primitives;

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
pub(crate) enum Op {
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

pub(crate) type Bench = Box<dyn FnMut() -> (u64, ()) + Send>;

/// Keeps a result alive so the optimizer cannot drop the work that made it.
pub(crate) fn bb<T>(v: T) {
    std::hint::black_box(v);
}

pub(crate) const KIB: [u8; 1024] = [0x5a; 1024];

pub(crate) fn table_op(op: Op, mode: CryptoMode, aead: AeadId) -> anyhow::Result<Bench> {
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
    let mut prims = BTreeMap::new();
    for p in primitives() {
        let mut bench = (p.make)().with_context(|| p.name)?;
        let rate = measure::ops_per_sec(budget, &mut bench);
        prims.insert(p.name, rate.round() as u64);
    }
    Ok(Report {
        single_core,
        all_cores,
        primitives: prims,
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
        for (key, rate) in crate::sessions::rows(mode, aead, budget, all_cores)? {
            row.insert(key, rate.round() as u64);
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
    for (name, base, rate) in prims.iter().filter(|p| p.1 > 0.0) {
        let us = 1e6 / rate;
        println!(
            "{name:<34} {:>12.0} {:>10.2} {:>12.2} {:>7.2}×",
            rate,
            us,
            base,
            us / base
        );
    }
    print_sessions(&report);
    Ok(())
}

/// µs per operation of a primitive row (0 when missing).
fn prim_us(report: &Report, name: &str) -> f64 {
    report
        .primitives
        .get(name)
        .filter(|r| **r > 0)
        .map_or(0.0, |r| 1e6 / *r as f64)
}

/// The primitives one handshake (initiate + respond, signed prekeys only) performs. Key
/// generation counts the library call itself (`lib_*`): the `*_keygen` rows above include
/// locked pages and an OS random draw, which ratchet keys do not pay.
fn handshake_primitives(mode: CryptoMode) -> &'static [(&'static str, f64)] {
    match mode {
        CryptoMode::Classical => &[
            ("ed25519_verify_1k", 2.0),
            ("ed25519_sign_1k", 1.0),
            ("lib_x25519_keygen", 1.0),
            ("x25519_dh", 2.0),
        ],
        CryptoMode::Hybrid => &[
            ("mldsa65_verify_1k", 2.0),
            ("ed25519_verify_1k", 2.0),
            ("mldsa65_sign_1k", 1.0),
            ("ed25519_sign_1k", 1.0),
            ("lib_x25519_keygen", 1.0),
            ("x25519_dh", 2.0),
            ("xwing_encaps", 1.0),
            ("xwing_decaps", 1.0),
            ("lib_mlkem768_keygen", 1.0),
        ],
        CryptoMode::Quantum => &[
            ("mldsa87_verify_1k", 2.0),
            ("mldsa87_sign_1k", 1.0),
            ("mlkem1024_encaps", 1.0),
            ("mlkem1024_decaps", 1.0),
            ("lib_mlkem1024_keygen", 1.0),
        ],
    }
}

fn print_sessions(report: &Report) {
    println!(
        "\nSessions, one core: handshake (vs the sum of its primitives), steady-state 1 KiB \
         messages (direction changes every {} messages; amortized)",
        crate::sessions::BURST
    );
    println!(
        "{:<10} {:>12} {:>14} {:>8} {:>12} {:>12} {:>14}",
        "mode", "handshake/s", "primitives µs", "ratio", "encrypt/s", "decrypt/s", "pairs/s"
    );
    for mode in CryptoMode::ALL {
        let row = &report.single_core[mode.as_str()];
        let get = |k: &str| row.get(k).copied().unwrap_or(0) as f64;
        let (h, e, d) = (
            get("session_handshake"),
            get("session_encrypt"),
            get("session_decrypt"),
        );
        let prim: f64 = handshake_primitives(mode)
            .iter()
            .map(|(name, times)| times * prim_us(report, name))
            .sum();
        let ours_us = if h > 0.0 { 1e6 / h } else { 0.0 };
        let pairs = if e > 0.0 && d > 0.0 {
            1.0 / (1.0 / e + 1.0 / d)
        } else {
            0.0
        };
        println!(
            "{:<10} {h:>12.0} {prim:>14.1} {:>7.2}× {e:>12.0} {d:>12.0} {pairs:>14.0}",
            mode.as_str(),
            if ours_us > 0.0 { prim / ours_us } else { 0.0 },
        );
    }
    println!(
        "\nSession hot path: ours against the library call (library µs / ours µs; target ≥ 0.90)"
    );
    for (label, ours, lib) in crate::wrappers::PAIRS {
        let (o, l) = (prim_us(report, ours), prim_us(report, lib));
        let ratio = if o > 0.0 { l / o } else { 0.0 };
        println!("{label:<26} ours {o:>8.3} µs   library {l:>8.3} µs   {ratio:>5.2}");
    }
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
