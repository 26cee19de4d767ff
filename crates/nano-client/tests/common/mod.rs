//! Harness of the client's end-to-end tests: the real `nano-relay` binary on loopback with a
//! generated configuration in a fresh temporary directory (`nano-testkit`), and the real
//! `nano-client` binary.
//!
//! ```text
//! relay_bin  builds nano-relay (once per test process, same target dir and profile)
//! Relay      start on port 0, kill -9, restart on new ports or on the same ports; killed on drop
//! cli        runs nano-client with a home, a passphrase and optional stdin, bounded by WAIT
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use nano_crypto::{CryptoMode, Identity, OsRng, SigContext};
use nano_proto::rest::{RotateKeysRequest, rotation_content};
use nano_proto::{Bytes, Username};
use nano_testkit::{Config, RelayProcess};
use tokio::time::timeout;

/// Upper bound of every single wait (a message, a command, the relay's start).
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The `nano-client` binary under test.
pub(crate) fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nano-client")
}

/// The `nano-relay` binary next to `nano-client` (`<target dir>/<profile>/nano-relay`), built
/// once per test process (see [`nano_testkit::build_relay_bin`]).
pub(crate) fn relay_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| nano_testkit::build_relay_bin(Path::new(client_bin())))
}

/// A running `nano-relay` child process (killed on drop) with its own temp dir: `relay.toml`,
/// `relay.db` (SQLite), `data/` (the relay identity) and one stderr log per run; the relay's
/// defaults but for port 0, the classical floor and no L2 cache. `api`, `ws`, `dir`,
/// `db_path`, `kill9`, `restart`, `restart_same_ports` and `logs` come through `Deref`.
#[derive(Debug)]
pub(crate) struct Relay(RelayProcess);

impl Deref for Relay {
    type Target = RelayProcess;

    fn deref(&self) -> &RelayProcess {
        &self.0
    }
}

impl DerefMut for Relay {
    fn deref_mut(&mut self) -> &mut RelayProcess {
        &mut self.0
    }
}

impl Relay {
    /// A relay on fresh ports in a fresh temp dir.
    pub(crate) fn start() -> Self {
        Self(RelayProcess::start(relay_bin(), &Config::minimal(), WAIT))
    }

    /// A relay like the development template's: anonymous sends and opaque payloads (test
    /// traffic) accepted.
    pub(crate) fn start_development() -> Self {
        let cfg = Config::minimal()
            .set("security", "allow_anonymous_send", true)
            .set("security", "allow_opaque_payloads", true);
        Self(RelayProcess::start(relay_bin(), &cfg, WAIT))
    }

    /// A relay serving its API and WebSocket over TLS with a generated self-signed
    /// certificate (the development configuration's `[tls]`).
    pub(crate) fn start_tls() -> Self {
        let cfg = Config::minimal()
            .set("tls", "enabled", true)
            .set("tls", "self_signed", true);
        Self(RelayProcess::start(relay_bin(), &cfg, WAIT))
    }

    /// A relay for `cfg(port)`, `port` a free WebSocket port it binds (retried when a parallel
    /// test takes it first).
    pub(crate) fn start_on_a_free_ws_port(cfg: impl Fn(u16) -> Config) -> (Self, u16) {
        let (r, port) = RelayProcess::start_on_a_free_ws_port(relay_bin(), cfg, WAIT);
        (Self(r), port)
    }

    /// A relay for `cfg` (see [`Config::minimal`]).
    pub(crate) fn start_config(cfg: &Config) -> Self {
        Self(RelayProcess::start(relay_bin(), cfg, WAIT))
    }

    /// A new relay (fresh temp dir, so a new identity) on the ports `other` used, which must
    /// have been stopped.
    pub(crate) fn start_on_ports_of(other: &Relay) -> Self {
        Self(RelayProcess::start_on_ports_of(other, &Config::minimal()))
    }
}

/// A loopback port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    nano_testkit::closed_port()
}

/// Runs `nano-client --home HOME ARGS` with `NANO_PASSPHRASE=passphrase` (unset when `None`)
/// and `stdin` as standard input, bounded by [`WAIT`].
pub(crate) fn cli(
    home: &Path,
    passphrase: Option<&str>,
    stdin: Option<&str>,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new(client_bin());
    cmd.arg("--home").arg(home).args(args);
    cmd.env_remove("NANO_HOME").env_remove("RUST_BACKTRACE");
    match passphrase {
        Some(p) => cmd.env("NANO_PASSPHRASE", p),
        None => cmd.env_remove("NANO_PASSPHRASE"),
    };
    run(&mut cmd, stdin)
}

/// Runs `cmd` to completion with its output captured, bounded by [`WAIT`].
pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    nano_testkit::run_within(cmd, stdin, WAIT)
}

/// `PUT /v1/users/NAME/keys`: `name` rotates from `old` to `new`, signed by `old`'s classical
/// key; expects 200.
pub(crate) async fn rotate_keys(api: &str, name: &str, old: &Identity, new: &Identity) {
    let username = Username::new(name).unwrap();
    let current: nano_proto::rest::UserResponse = reqwest::get(format!("{api}/v1/users/{name}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = current.key_version;
    let content = rotation_content(&username, version, &old.fingerprint(), &new.fingerprint());
    let sign = |who: &Identity| {
        who.sign(
            CryptoMode::Classical,
            SigContext::KeyRotation,
            &content,
            &mut OsRng,
        )
        .unwrap()
        .as_bytes()
        .to_vec()
    };
    let req = RotateKeysRequest {
        bundle: Bytes(new.public_bundle().to_bytes()),
        crypto_mode: CryptoMode::Classical,
        key_version: version,
        signature: Bytes(sign(old)),
        new_signature: Bytes(sign(new)),
    };
    let resp = timeout(
        WAIT,
        reqwest::Client::new()
            .put(format!("{api}/v1/users/{name}/keys"))
            .json(&req)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

/// `#[tokio::test]` functions that run `$flow(CryptoMode::$mode)`, one per `name => Mode`.
#[macro_export]
macro_rules! per_mode {
    ($flow:ident: $($name:ident => $mode:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $flow(CryptoMode::$mode).await;
            }
        )+
    };
}
