//! The relays of a chaos run: spawned like `nano-bench load` spawns one (same binary lookup,
//! same `relay.toml` limits), but kept restartable: `kill -9`, then started again on the same
//! ports, configuration, data directory (identity) and database, so clients reconnect to the
//! URL they know.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::setup::{rand_suffix, read_listening, relay_command, relay_toml};

/// How long a starting relay has to print its listening line (seconds).
const START_WAIT: Duration = Duration::from_secs(60);
/// How long a restart keeps retrying while a port is still taken (seconds).
const RESTART_WAIT: Duration = Duration::from_secs(30);
/// The relay's identity file inside its data directory (clients pin the identity).
const IDENTITY_FILE: &str = "relay-identity.key";

/// The run's temporary directory (relays, a private Redis): removed on drop unless
/// [`RunDir::keep`] was called (a failed check keeps the logs for reading).
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
    keep: AtomicBool,
}

impl RunDir {
    /// Creates `$TMPDIR/nano-chaos-<pid>-<random>`.
    pub(crate) fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "nano-chaos-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            keep: AtomicBool::new(false),
        })
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place after the run.
    pub(crate) fn keep(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::Relaxed) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A relay child process (killed on drop) with its own directory: `relay.toml`, `data/`
/// (identity), `relay.db` (SQLite, unless a storage URL is given), one stderr log per run.
#[derive(Debug)]
pub(crate) struct Relay {
    dir: PathBuf,
    storage_url: String,
    extra: String,
    child: Option<Child>,
    runs: u32,
    /// (API, WebSocket) ports, fixed after the first start.
    ports: (u16, u16),
    /// Its HTTP API, e.g. `http://127.0.0.1:PORT`.
    pub(crate) api: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The port of `scheme://host:PORT`.
fn port_of(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("no port in {url}"))
}

impl Relay {
    /// Starts a relay in `run/<name>` on free ports with `storage_url` (default a SQLite file
    /// in its directory) and `extra` TOML sections; with `identity_of`, it serves that relay's
    /// identity (relays of one deployment share it).
    pub(crate) fn start(
        run: &RunDir,
        name: &str,
        storage_url: Option<&str>,
        extra: &str,
        identity_of: Option<&Relay>,
    ) -> anyhow::Result<Self> {
        let dir = run.path().join(name);
        std::fs::create_dir_all(dir.join("data"))?;
        if let Some(other) = identity_of {
            std::fs::copy(
                other.dir.join("data").join(IDENTITY_FILE),
                dir.join("data").join(IDENTITY_FILE),
            )
            .context("copying the relay identity")?;
        }
        let storage_url = storage_url.map_or_else(
            || format!("sqlite://{}/relay.db", dir.display()),
            str::to_owned,
        );
        let mut relay = Self {
            dir,
            storage_url,
            extra: extra.to_owned(),
            child: None,
            runs: 0,
            ports: (0, 0),
            api: String::new(),
        };
        relay.ports = relay.spawn((0, 0))?;
        Ok(relay)
    }

    /// Writes the configuration for `ports`, starts the child and reads its listening line.
    fn spawn(&mut self, ports: (u16, u16)) -> anyhow::Result<(u16, u16)> {
        let cfg = self.dir.join("relay.toml");
        let text = relay_toml(
            &self.storage_url,
            &self.dir.join("data"),
            ports,
            &self.extra,
        );
        std::fs::write(&cfg, text)?;
        self.runs += 1;
        let log = self.dir.join(format!("stderr-{}.log", self.runs));
        let mut child = relay_command()?
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .context("cannot start nano-relay")?;
        let Some((api, ws)) = read_listening(&mut child, START_WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the relay did not start (see {})", log.display());
        };
        self.child = Some(child);
        self.api = api;
        Ok((port_of(&self.api)?, port_of(&ws)?))
    }

    /// `kill -9`: no chance to flush, drain or answer anything.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the killed relay again on the same ports, configuration, data and database,
    /// retrying for up to 30 s while a port is still taken.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        let ports = self.ports;
        let deadline = Instant::now() + RESTART_WAIT;
        loop {
            match self.spawn(ports) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
