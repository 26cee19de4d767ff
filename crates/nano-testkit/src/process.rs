//! The `nano-relay` child process, and running or building binaries.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Config;

/// Environment variables the relay reads; removed so the generated file is what counts.
const RELAY_ENV: [&str; 4] = [
    "NANO_STORAGE_URL",
    "NANO_L2_CACHE_URL",
    "NANO_L2_KEY_PREFIX",
    "NANO_TLS_KEY_PATH",
];

/// How many lines of each run's stderr [`RelayProcess::logs`] shows.
const LOG_TAIL: usize = 200;

/// A `Command` for the relay binary `bin` with the relay's environment overrides removed.
pub fn relay_command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for k in RELAY_ENV {
        c.env_remove(k);
    }
    c
}

/// Runs `cmd` to completion with its output captured and `stdin` (if any) as its standard
/// input, bounded by `wait` (killed and a panic after that).
pub fn run_within(cmd: &mut Command, stdin: Option<&str>, wait: Duration) -> Output {
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
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(wait) {
        Ok(out) => out.expect("command output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("command did not finish within {wait:?}: {cmd:?}");
        }
    }
}

/// Builds the `nano-relay` binary into the target dir and profile of `next_to` (a binary of
/// the running tests, e.g. `env!("CARGO_BIN_EXE_nano-client")`) and returns its path. A
/// dev-dependency does not build another package's binaries (that needs the unstable artifact
/// dependencies), so this runs `cargo build`; when it is up to date that is a quick no-op.
/// Callers keep the result (once per test process).
pub fn build_relay_bin(next_to: &Path) -> PathBuf {
    let profile_dir = next_to.parent().expect("profile dir");
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
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
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
/// `relay.db` (SQLite, unless the config names a storage URL), `data/` (the relay identity)
/// and one stderr log per run. Every wait is bounded by the `wait` it was started with.
pub struct RelayProcess {
    bin: PathBuf,
    config: Config,
    dir: tempfile::TempDir,
    child: Option<Child>,
    runs: u32,
    wait: Duration,
    /// `http://127.0.0.1:PORT` of the API.
    pub api: String,
    /// `ws://127.0.0.1:PORT` of the WebSocket port.
    pub ws: String,
}

impl std::fmt::Debug for RelayProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayProcess")
            .field("api", &self.api)
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "relay temp dir: {}\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

impl RelayProcess {
    /// Writes `cfg` into a fresh temp dir and starts `bin` on it (a panic if it does not print
    /// its listening line within `wait`).
    pub fn start(bin: &Path, cfg: &Config, wait: Duration) -> Self {
        let mut relay = Self::prepare(bin, cfg, wait);
        relay.write_config(cfg);
        if let Err(e) = relay.spawn() {
            panic!("{e}");
        }
        relay
    }

    /// Starts `bin` on the configuration `cfg(port)` for a free WebSocket `port` picked here (for
    /// tests that must know the port before the relay prints it): a port picked and released
    /// can be taken by a parallel test before the relay binds it, so on failure this picks
    /// another, up to 20 times. Returns the relay and its port.
    pub fn start_on_a_free_ws_port(
        bin: &Path,
        cfg: impl Fn(u16) -> Config,
        wait: Duration,
    ) -> (Self, u16) {
        let mut last = String::new();
        for _ in 0..20 {
            let port = closed_port();
            let c = cfg(port);
            let mut relay = Self::prepare(bin, &c, wait);
            relay.write_config(&c);
            match relay.spawn() {
                Ok(()) => return (relay, port),
                Err(e) => last = e,
            }
        }
        panic!("no free port after 20 attempts: {last}");
    }

    /// A new relay (fresh temp dir, so a new identity) with `cfg` on the ports `other` used,
    /// which must have been stopped; retries for a while when a port is still taken.
    pub fn start_on_ports_of(other: &RelayProcess, cfg: &Config) -> Self {
        assert!(other.child.is_none(), "the other relay still runs");
        let mut relay = Self::prepare(&other.bin, cfg, other.wait);
        relay.write_config(&cfg.clone().ports(port_of(&other.api), port_of(&other.ws)));
        relay.spawn_retrying();
        assert_eq!((&relay.api, &relay.ws), (&other.api, &other.ws));
        relay
    }

    fn prepare(bin: &Path, cfg: &Config, wait: Duration) -> Self {
        Self {
            bin: bin.to_owned(),
            config: cfg.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            runs: 0,
            wait,
            api: String::new(),
            ws: String::new(),
        }
    }

    /// The relay's temp dir (config, SQLite file, data dir, stderr logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("relay.toml")
    }

    /// The SQLite database file (when the config names no storage URL).
    pub fn db_path(&self) -> PathBuf {
        self.dir().join("relay.db")
    }

    /// The bound of every wait.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("relay is not running").id()
    }

    fn write_config(&self, cfg: &Config) {
        std::fs::write(self.config_path(), cfg.render(self.dir())).expect("write relay.toml");
    }

    /// Starts the child and reads its listening line; on failure the child is gone and the
    /// error carries its stderr.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "relay already running");
        self.runs += 1;
        let log = self.dir().join(format!("stderr-{}.log", self.runs));
        let stderr = std::fs::File::create(&log).expect("stderr log");
        let mut child = relay_command(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            // NANO_TEST_RELAY_LOG=debug for more detail in a failing test's output.
            .env(
                "RUST_LOG",
                std::env::var("NANO_TEST_RELAY_LOG").unwrap_or_else(|_| "info".into()),
            )
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
            .recv_timeout(self.wait)
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
                    "the relay did not print its listening line within {:?}\n{}",
                    self.wait,
                    self.logs()
                ))
            }
        }
    }

    /// [`RelayProcess::spawn`], retrying for a while when a port is still taken.
    fn spawn_retrying(&mut self) {
        let deadline = Instant::now() + self.wait;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The relay's stderr of every run so far (tail of each).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            let p = self.dir().join(format!("stderr-{run}.log"));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- relay stderr, run {run} ----\n"));
            for l in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `kill -9`: no chance to flush or drain anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("wait after SIGKILL");
        }
    }

    /// SIGTERM, then waits (bounded, blocking) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM")
    }

    /// Sends `signal` (`-TERM`, `-INT`) with `kill`, then waits (bounded, blocking) for the
    /// exit status.
    pub fn signal(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("relay is not running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
        let deadline = Instant::now() + self.wait;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the relay did not exit within {:?} of kill {signal}\n{}",
                        self.wait,
                        self.logs()
                    );
                }
            }
        }
    }

    /// Starts the relay again on the same configuration, data dir and database (new ports
    /// when the configuration asks for port 0).
    pub fn restart(&mut self) {
        self.write_config(&self.config.clone());
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Starts the relay again on the same data dir, database and ports.
    pub fn restart_same_ports(&mut self) {
        let (api, ws) = (self.api.clone(), self.ws.clone());
        self.write_config(&self.config.clone().ports(port_of(&api), port_of(&ws)));
        self.spawn_retrying();
        assert_eq!(
            (&self.api, &self.ws),
            (&api, &ws),
            "restarted on other ports"
        );
    }
}
