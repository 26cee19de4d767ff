//! Harness of the client's end-to-end tests: the real `nano-relay` binary on loopback with a
//! generated configuration in a fresh temporary directory (a trimmed copy of
//! `crates/nano-relay/tests/relay_common`), and the real `nano-client` binary.
//!
//! ```text
//! relay_bin  builds nano-relay (once per test process, same target dir and profile)
//! Relay      start on port 0, kill -9, restart on new ports or on the same ports; killed on drop
//! cli        runs nano-client with a home, a passphrase and optional stdin, bounded by WAIT
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Upper bound of every single wait (a message, a command, the relay's start).
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Environment variables the relay reads; removed so the generated file is what counts.
const RELAY_ENV: [&str; 4] = [
    "NANO_STORAGE_URL",
    "NANO_L2_CACHE_URL",
    "NANO_L2_KEY_PREFIX",
    "NANO_TLS_KEY_PATH",
];

/// The `nano-client` binary under test.
pub(crate) fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nano-client")
}

/// The `nano-relay` binary next to `nano-client` (`<target dir>/<profile>/nano-relay`), built
/// once per test process. A dev-dependency does not build another package's binaries (that
/// needs the unstable artifact dependencies), so this runs `cargo build` for it; when it is up
/// to date that is a quick no-op.
pub(crate) fn relay_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let client = Path::new(client_bin());
        let profile_dir = client.parent().expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(&workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "nano-relay",
                "--bin",
                "nano-relay",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(p) => {
                cmd.args(["--profile", p]);
            }
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building nano-relay failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("nano-relay");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// Parses `nano-relay listening api=http://… websocket=ws://…`.
fn parse_listening(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix("nano-relay listening ")?;
    let mut api = None;
    let mut ws = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("api=") {
            api = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("websocket=") {
            ws = Some(v.to_owned());
        }
    }
    Some((api?, ws?))
}

/// The port of `scheme://host:PORT`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// A running `nano-relay` child process (killed on drop) with its own temp dir: `relay.toml`,
/// `relay.db` (SQLite), `data/` (the relay identity) and one stderr log per run.
pub(crate) struct Relay {
    dir: tempfile::TempDir,
    child: Option<Child>,
    runs: u32,
    /// `http://127.0.0.1:PORT` of the API.
    pub(crate) api: String,
    /// `ws://127.0.0.1:PORT` of the WebSocket port.
    pub(crate) ws: String,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("api", &self.api)
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

impl Relay {
    /// A relay on fresh ports in a fresh temp dir.
    pub(crate) fn start() -> Self {
        let mut relay = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            runs: 0,
            api: String::new(),
            ws: String::new(),
        };
        relay.write_config(0, 0);
        if let Err(e) = relay.spawn() {
            panic!("{e}");
        }
        relay
    }

    /// The relay's temp dir.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite database file.
    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir().join("relay.db")
    }

    fn write_config(&self, api_port: u16, ws_port: u16) {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let text = format!(
            "[server]\napi_port = {api_port}\nwebsocket_port = {ws_port}\n\n\
             [security]\nminimum_crypto_mode = \"classical\"\n\n\
             [caching]\nenable_l2_cache = false\n\n\
             [storage]\nurl = {}\ndata_dir = {}\n",
            q(&format!("sqlite://{}", self.db_path().display())),
            q(&self.dir().join("data").display().to_string()),
        );
        std::fs::write(self.dir().join("relay.toml"), text).expect("write relay.toml");
    }

    /// Starts the child and reads its listening line; on failure the child is gone and the
    /// error carries its stderr.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "relay already running");
        self.runs += 1;
        let log = self.dir().join(format!("stderr-{}.log", self.runs));
        let stderr = std::fs::File::create(&log).expect("stderr log");
        let mut cmd = Command::new(relay_bin());
        for k in RELAY_ENV {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .arg("--config")
            .arg(self.dir().join("relay.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn nano-relay");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        match rx
            .recv_timeout(WAIT)
            .ok()
            .as_deref()
            .and_then(parse_listening)
        {
            Some((api, ws)) => {
                self.child = Some(child);
                self.api = api;
                self.ws = ws;
                Ok(())
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the relay did not print its listening line within {WAIT:?}\n{}",
                    self.logs()
                ))
            }
        }
    }

    /// The relay's stderr of every run so far (tail of each).
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            let text = std::fs::read_to_string(self.dir().join(format!("stderr-{run}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- relay stderr, run {run} ----\n"));
            for l in &lines[lines.len().saturating_sub(100)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `kill -9`: no chance to flush or drain anything.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("wait after SIGKILL");
        }
    }

    /// Starts the relay again on the same data dir and database, on new ports.
    pub(crate) fn restart(&mut self) {
        self.write_config(0, 0);
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Starts the relay again on the same data dir, database and ports.
    pub(crate) fn restart_same_ports(&mut self) {
        let (api, ws) = (self.api.clone(), self.ws.clone());
        self.write_config(port_of(&api), port_of(&ws));
        self.spawn_retrying();
        assert_eq!(
            (&self.api, &self.ws),
            (&api, &ws),
            "restarted on other ports"
        );
    }

    /// A new relay (fresh temp dir, so a new identity) on the ports `other` used, which must
    /// have been stopped.
    pub(crate) fn start_on_ports_of(other: &Relay) -> Self {
        assert!(other.child.is_none(), "the other relay still runs");
        let mut relay = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            runs: 0,
            api: String::new(),
            ws: String::new(),
        };
        relay.write_config(port_of(&other.api), port_of(&other.ws));
        relay.spawn_retrying();
        assert_eq!((&relay.api, &relay.ws), (&other.api, &other.ws));
        relay
    }

    /// [`Relay::spawn`], retrying for a while when a port is still taken.
    fn spawn_retrying(&mut self) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if std::time::Instant::now() >= deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
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
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("command output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("command did not finish within {WAIT:?}: {cmd:?}");
        }
    }
}
