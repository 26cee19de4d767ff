//! `nano-bench`: measures Nano-Messenger on this machine.
//!
//! ```text
//! main.rs       argument parsing and dispatch
//! measure.rs    the timing harness: warm-up, fixed-length batches, median; one or all cores
//! crypto.rs     the guide's crypto table (5 operations × 3 modes), reports, printing
//! primitives.rs the raw primitive figures beneath it
//! sessions.rs   session rows: handshake, steady-state encrypt and decrypt of 1 KiB
//! wrappers.rs   session hot-path operations through our types beside the raw library calls
//! sizes.rs      bytes on the wire per mode: envelope and frame overhead over the plaintext
//! output.rs     a run's report files (JSON, Markdown), for load and chaos
//! load/         the guide's load test: spawned relay, real clients, reports
//! chaos/        faults under load (relay kill -9, PostgreSQL and Redis restarts): loss, duplicates
//! ```
#![forbid(unsafe_code)]

mod chaos;
mod crypto;
mod load;
mod measure;
mod output;
mod primitives;
mod sessions;
mod sizes;
mod wrappers;

use clap::{Parser, Subcommand};

/// jemalloc, as in the relay: a load run's clients allocate and free many bundle-sized buffers
/// (identity and prekey bundles, handshakes), where the system allocator spent about 15 % of
/// the load generator's CPU in a cold run (docs/BENCHMARKS.md §6).
#[cfg(unix)]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "nano-bench", version, about = "Nano-Messenger benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The guide's crypto table (ops/s), on one core and on all cores, with raw primitives.
    Crypto(crypto::CryptoArgs),
    /// The guide's load test against a relay, with real clients doing real crypto.
    Load(load::LoadArgs),
    /// Faults under sustained load (relay kill -9, PostgreSQL or Redis restart): loss,
    /// duplicates, failed sends and recovery time.
    Chaos(chaos::ChaosArgs),
    /// Bytes on the wire per mode: envelope and `send_message` frame against the plaintext.
    Sizes(sizes::SizesArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Chaos(args) => chaos::main(&args),
        Command::Crypto(args) => crypto::run(&args),
        Command::Load(args) => load::main(&args),
        Command::Sizes(args) => sizes::run(&args),
    }
}
