//! Test support shared by the end-to-end tests of `nano-relay` and `nano-client` (dev-only,
//! never published): runs the real `nano-relay` binary on loopback with a generated
//! configuration in a fresh temporary directory.
//!
//! ```text
//! config    Config: relay.toml builder (port 0, SQLite in the temp dir unless a storage URL is given)
//! process   RelayProcess: start, parse its stdout line, kill -9, signals, restart (same or new
//!           ports); killed on drop, its stderr printed when the test panicked.
//!           relay_command / run_within / build_relay_bin: running and locating binaries
//! postgres  PgDb: a fresh PostgreSQL database per test (NANO_TEST_POSTGRES_URL)
//! redis     redis_url / redis_prefix / wait_for_subscribers / redis_cleanup (NANO_TEST_REDIS_URL)
//! ```
//!
//! The binary's path is a parameter everywhere: nano-relay's tests pass
//! `env!("CARGO_BIN_EXE_nano-relay")`, nano-client's build it with [`build_relay_bin`].
// Test support: failing loudly (unwrap, expect, panic) is how a harness reports a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![forbid(unsafe_code)]

mod config;
mod postgres;
mod process;
mod redis;

use std::time::Duration;

use rand_core::RngCore;

pub use config::{Config, toml_str};
pub use postgres::PgDb;
pub use process::{RelayProcess, build_relay_bin, closed_port, relay_command, run_within};
pub use redis::{redis_cleanup, redis_prefix, redis_url, wait_for_subscribers};

/// Upper bound of the waits on PostgreSQL and Redis (the relay process takes its own bound).
pub const WAIT: Duration = Duration::from_secs(20);

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Runs blocking `f` on its own thread; `None` if it did not finish within `wait`.
pub fn on_thread_within<T: Send + 'static>(
    wait: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(wait).ok()
}
