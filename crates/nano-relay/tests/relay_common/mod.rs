//! Harness of the end-to-end tests: runs the real `nano-relay` binary on loopback with a
//! generated configuration in a fresh temporary directory, and talks to it over HTTP and
//! WebSocket like a client would.
//!
//! ```text
//! Config   relay.toml builder (port 0, SQLite in the temp dir unless a storage URL is given)
//! Relay    the child process: start, parse its stdout line, kill -9, SIGTERM, restart;
//!          killed on drop (its stderr is printed when the test panicked)
//! PgDb     a fresh PostgreSQL database per test (NANO_TEST_POSTGRES_URL), dropped at the end
//! Ws       a WebSocket client: frames out (JSON or binary), frames in with a timeout
//! User     an identity: registration, auth answers, login
//! ```
//!
//! Every wait is bounded by [`WAIT`]; nothing asserts on timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nano_crypto::{CryptoMode, Fingerprint, Identity, OsRng, SigContext};
use nano_proto::rest::{RegisterRequest, RelayInfo, UserResponse, claim_content};
use nano_proto::signed::auth_content;
use nano_proto::{Bytes, ClientFrame, MessageId, RelayFrame, Username};
use rand_core::RngCore;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of every single wait (a frame, a request, the relay's start or exit).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Environment variables the relay reads; removed so the generated file is what counts.
const RELAY_ENV: [&str; 4] = [
    "NANO_STORAGE_URL",
    "NANO_L2_CACHE_URL",
    "NANO_L2_KEY_PREFIX",
    "NANO_TLS_KEY_PATH",
];

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A fresh random message id.
pub(crate) fn random_id() -> MessageId {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    MessageId(b)
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The path of the `nano-relay` binary under test.
pub(crate) fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nano-relay")
}

/// A `Command` for the relay binary with the relay's environment overrides removed.
pub(crate) fn relay_command() -> Command {
    let mut c = Command::new(relay_bin());
    for k in RELAY_ENV {
        c.env_remove(k);
    }
    c
}

/// Runs `cmd` to completion (bounded by [`WAIT`]) with its output captured.
pub(crate) fn output_within(cmd: &mut Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("command output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("command did not finish within {WAIT:?}: {cmd:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// A `relay.toml` under construction: sections of `key = value` lines (values are TOML
/// literals). `[storage]` is completed when the relay starts (data dir in its temp dir).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    sections: Vec<(String, Vec<(String, String)>)>,
    storage_url: Option<String>,
}

impl Config {
    /// Port 0 for both listeners, SQLite, classical floor, anonymous sends, the brief's limits,
    /// no L2 cache.
    pub(crate) fn new() -> Self {
        Self {
            sections: Vec::new(),
            storage_url: None,
        }
        .set("server", "api_port", 0)
        .set("server", "websocket_port", 0)
        .set("security", "minimum_crypto_mode", toml_str("classical"))
        .set("security", "allow_anonymous_send", true)
        .set("limits", "send_queue_depth", 256)
        .set("limits", "max_frame_bytes", 262_144)
        .set("limits", "max_message_bytes", 131_072)
        .set("limits", "inbox_quota", 10_000)
        .set("limits", "idle_timeout_seconds", 300)
        .set("caching", "enable_l2_cache", false)
    }

    /// Sets `[section] key = value` (`value` is written as is: quote strings with [`toml_str`]).
    pub(crate) fn set(mut self, section: &str, key: &str, value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[idx].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => keys.push((key.to_owned(), value)),
        }
        self
    }

    /// Uses this storage URL instead of a SQLite file in the relay's temp dir.
    pub(crate) fn storage_url(mut self, url: &str) -> Self {
        self.storage_url = Some(url.to_owned());
        self
    }

    /// Turns the Redis L2 cache (and cross-relay notices) on.
    pub(crate) fn l2(self, redis_url: &str, prefix: &str) -> Self {
        self.set("caching", "enable_l2_cache", true)
            .set("caching", "l2_cache_url", toml_str(redis_url))
            .set("caching", "l2_key_prefix", toml_str(prefix))
            .set("caching", "l2_cache_ttl_seconds", 120)
    }

    /// The file text for a relay whose temp dir is `dir`.
    pub(crate) fn render(&self, dir: &Path) -> String {
        let url = self
            .storage_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("relay.db").display()));
        let cfg = self.clone().set("storage", "url", toml_str(&url)).set(
            "storage",
            "data_dir",
            toml_str(&dir.join("data").display().to_string()),
        );
        let mut out = String::new();
        for (section, keys) in &cfg.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The relay process

/// A running `nano-relay` child process (killed on drop).
pub(crate) struct Relay {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    child: Option<Child>,
    runs: u32,
    /// `http://127.0.0.1:PORT` of the API.
    pub(crate) api: String,
    /// `ws://127.0.0.1:PORT` of the WebSocket port.
    pub(crate) ws: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("api", &self.api)
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
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

impl Relay {
    /// Writes `cfg` into a fresh temp dir and starts the relay on it.
    pub(crate) async fn start(cfg: &Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("relay.toml");
        std::fs::write(&config_path, cfg.render(dir.path())).expect("write relay.toml");
        let mut relay = Self {
            dir,
            config_path,
            child: None,
            runs: 0,
            api: String::new(),
            ws: String::new(),
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("HTTP client"),
        };
        relay.spawn().await;
        relay
    }

    /// The relay's temp dir (config, SQLite file, data dir, stderr logs).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated configuration file.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("relay is not running").id()
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "relay already running");
        self.runs += 1;
        let log = self.dir.path().join(format!("stderr-{}.log", self.runs));
        let stderr = std::fs::File::create(&log).expect("stderr log");
        let mut child = relay_command()
            .arg("--config")
            .arg(&self.config_path)
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
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
            .await
            .expect("stdout reader");
        let parsed = line.ok().as_deref().and_then(parse_listening);
        let Some((api, ws)) = parsed else {
            panic!(
                "the relay did not print its listening line within {WAIT:?}\n{}",
                self.logs()
            );
        };
        self.api = api;
        self.ws = ws;
    }

    /// The relay's stderr of every run so far (tail of each).
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            let p = self.dir.path().join(format!("stderr-{run}.log"));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(200);
            out.push_str(&format!("---- relay stderr, run {run} ----\n"));
            for l in &lines[from..] {
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

    /// SIGTERM, then waits (bounded) for the exit status.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM").await
    }

    /// Sends `signal` (`-TERM`, `-INT`) with `kill`, then waits (bounded) for the exit status.
    pub(crate) async fn signal(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("relay is not running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => return Ok(s),
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(());
                    }
                }
            }
        })
        .await
        .expect("waiter");
        match waited {
            Ok(s) => s,
            Err(()) => panic!(
                "the relay did not exit within {WAIT:?} of kill {signal}\n{}",
                self.logs()
            ),
        }
    }

    /// Starts the relay again on the same configuration, data dir and database (new ports).
    pub(crate) async fn restart(&mut self) {
        self.spawn().await;
    }

    // ---- HTTP

    async fn request(&self, req: reqwest::RequestBuilder) -> (u16, String) {
        let resp = timeout(WAIT, req.send())
            .await
            .expect("HTTP request timed out")
            .expect("HTTP request failed");
        let status = resp.status().as_u16();
        let body = timeout(WAIT, resp.text())
            .await
            .expect("HTTP body timed out")
            .expect("HTTP body");
        (status, body)
    }

    /// GET `path`: status and body text.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        self.request(self.http.get(format!("{}{path}", self.api)))
            .await
    }

    /// GET `path`: status and JSON body.
    pub(crate) async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, b) = self.get(path).await;
        (s, parse_json(&b))
    }

    /// POST a JSON body.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        let (s, b) = self
            .request(self.http.post(format!("{}{path}", self.api)).json(body))
            .await;
        (s, parse_json(&b))
    }

    /// Sends `body` (as `application/json`) with `method`: status and body text.
    pub(crate) async fn request_raw(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        self.request(
            self.http
                .request(method, format!("{}{path}", self.api))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// POST raw bytes as `application/json`.
    pub(crate) async fn post_raw(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (s, b) = self
            .request(
                self.http
                    .post(format!("{}{path}", self.api))
                    .header("content-type", "application/json")
                    .body(body.to_owned()),
            )
            .await;
        (s, parse_json(&b))
    }

    /// PUT a JSON body.
    pub(crate) async fn put_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        let (s, b) = self
            .request(self.http.put(format!("{}{path}", self.api)).json(body))
            .await;
        (s, parse_json(&b))
    }

    /// `GET /v1/relay`.
    pub(crate) async fn info(&self) -> RelayInfo {
        let (s, b) = self.get("/v1/relay").await;
        assert_eq!(s, 200, "{b}");
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("RelayInfo: {e}: {b}"))
    }

    /// `GET /metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        let (s, b) = self.get("/metrics").await;
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Opens a WebSocket connection.
    pub(crate) async fn connect(&self) -> Ws {
        Ws::connect(&self.ws).await
    }
}

impl Drop for Relay {
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

fn parse_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The value of the sample `series` (e.g. `nano_messenger_errors_total{code="auth_failed"}`)
/// in a Prometheus text exposition.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL and Redis

/// A database of its own for one test, dropped (best effort) at the end.
#[derive(Debug)]
pub(crate) struct PgDb {
    admin_url: String,
    /// The database name (`nano_t_<hex>`).
    pub(crate) name: String,
    /// The URL of the database, for `storage.url`.
    pub(crate) url: String,
}

/// `url` with its database (path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

impl PgDb {
    /// Creates `nano_t_<hex>` when `NANO_TEST_POSTGRES_URL` is set; otherwise says why the test
    /// skips and returns `None`.
    pub(crate) fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("NANO_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: NANO_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("nano_t_{}", random_hex(8));
        let url = with_database(&admin_url, &name);
        let (a, n) = (admin_url.clone(), name.clone());
        // The postgres crate runs its own runtime: keep it off the test's async threads.
        let created = on_thread_within(move || {
            let mut c = postgres::Client::connect(&a, postgres::NoTls)
                .map_err(|e| format!("connect to NANO_TEST_POSTGRES_URL: {e}"))?;
            c.batch_execute(&format!("CREATE DATABASE {n}"))
                .map_err(|e| format!("CREATE DATABASE: {e}"))
        });
        match created {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!("CREATE DATABASE did not finish within {WAIT:?}"),
        }
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (a, n) = (self.admin_url.clone(), self.name.clone());
        let _ = on_thread_within(move || {
            if let Ok(mut c) = postgres::Client::connect(&a, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        });
    }
}

/// Runs blocking `f` on its own thread; `None` if it did not finish within [`WAIT`].
fn on_thread_within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT).ok()
}

/// `NANO_TEST_REDIS_URL`, or `None` (saying why `test` skips).
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match std::env::var("NANO_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            eprintln!("skipping {test}: NANO_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// Waits until at least `n` clients subscribe to the Redis `channel`.
pub(crate) async fn wait_for_subscribers(url: &str, channel: &str, n: i64) {
    let (url, ch) = (url.to_owned(), channel.to_owned());
    let waiter = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(url.as_str()).expect("redis URL");
        let mut con = client.get_connection().expect("redis connection");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&ch)
                .query(&mut con)
                .expect("PUBSUB NUMSUB");
            if count >= n || std::time::Instant::now() >= deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let got = timeout(WAIT + WAIT, waiter)
        .await
        .expect("Redis did not answer")
        .expect("redis waiter");
    assert!(got >= n, "only {got} of {n} relays subscribed to {channel}");
}

/// Deletes the Redis keys under `prefix` (best effort).
pub(crate) async fn redis_cleanup(url: &str, prefix: &str) {
    let (url, pattern) = (url.to_owned(), format!("{prefix}*"));
    let cleanup = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut con = client.get_connection().ok()?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut con).ok()?;
        if !keys.is_empty() {
            let _: Option<i64> = redis::cmd("DEL").arg(&keys).query(&mut con).ok();
        }
        Some(())
    });
    let _ = timeout(WAIT, cleanup).await;
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

/// A delivered `message` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) id: MessageId,
    pub(crate) seq: u64,
    pub(crate) sender: Option<String>,
    pub(crate) mode: CryptoMode,
    pub(crate) timestamp_ms: u64,
    pub(crate) message: String,
}

/// A `fetched` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) count: u32,
    pub(crate) last_seq: Option<u64>,
    pub(crate) more: bool,
}

/// A `challenge` frame.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    pub(crate) nonce: [u8; 32],
    pub(crate) relay_id: String,
}

impl Challenge {
    /// The relay fingerprint the challenge names.
    pub(crate) fn relay_fingerprint(&self) -> Fingerprint {
        let v = hex::decode(&self.relay_id).expect("relay_id is hex");
        Fingerprint(v.try_into().expect("relay_id is 32 bytes"))
    }
}

/// The stream type of every client connection.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client connection.
pub(crate) struct Ws {
    inner: WsStream,
    /// Send frames in the binary form.
    pub(crate) binary: bool,
    /// Whether the last frame received was a binary message.
    pub(crate) last_binary: bool,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ws")
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

impl Ws {
    /// Connects to `url` (`ws://…`).
    pub(crate) async fn connect(url: &str) -> Self {
        let (inner, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("WebSocket connect timed out")
            .expect("WebSocket connect failed");
        Self::wrap(inner)
    }

    /// Connects with a small socket receive buffer (set before connecting, so the advertised
    /// window stays small).
    pub(crate) async fn connect_with_recv_buffer(url: &str, bytes: u32) -> Self {
        let addr: SocketAddr = url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .expect("ws://IP:PORT");
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = timeout(WAIT, sock.connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        let (inner, _) = timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("WebSocket handshake timed out")
        .expect("WebSocket handshake failed");
        Self::wrap(inner)
    }

    fn wrap(inner: WsStream) -> Self {
        Self {
            inner,
            binary: false,
            last_binary: false,
        }
    }

    /// Sends one WebSocket message, panicking on failure.
    pub(crate) async fn send_raw(&mut self, m: Message) {
        timeout(WAIT, self.inner.send(m))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends one WebSocket message; whether it went out.
    pub(crate) async fn try_send_raw(&mut self, m: Message) -> bool {
        matches!(timeout(WAIT, self.inner.send(m)).await, Ok(Ok(())))
    }

    /// Sends a text message.
    pub(crate) async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text.to_owned())).await;
    }

    /// Sends a binary message.
    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.send_raw(Message::binary(bytes)).await;
    }

    fn encode(&self, f: &ClientFrame) -> Message {
        if self.binary {
            Message::binary(f.to_binary().expect("encode binary frame"))
        } else {
            Message::text(f.to_json().expect("encode JSON frame"))
        }
    }

    /// Sends a frame (JSON or binary per [`Ws::binary`]).
    pub(crate) async fn send(&mut self, f: &ClientFrame) {
        let m = self.encode(f);
        self.send_raw(m).await;
    }

    /// Queues a frame without flushing (pipelining); [`Ws::flush`] sends what is queued.
    pub(crate) async fn feed(&mut self, f: &ClientFrame) {
        let m = self.encode(f);
        timeout(WAIT, self.inner.feed(m))
            .await
            .expect("feed timed out")
            .expect("feed failed");
    }

    /// Flushes queued frames.
    pub(crate) async fn flush(&mut self) {
        timeout(WAIT, self.inner.flush())
            .await
            .expect("flush timed out")
            .expect("flush failed");
    }

    /// The next WebSocket message; `None` when the stream ended or failed.
    pub(crate) async fn next_raw(&mut self) -> Option<Message> {
        match timeout(WAIT, self.inner.next()).await {
            Err(_) => panic!("no WebSocket message within {WAIT:?}"),
            Ok(Some(Ok(m))) => Some(m),
            Ok(_) => None,
        }
    }

    /// The next relay frame (pings and pongs skipped); panics if the connection closes.
    pub(crate) async fn recv(&mut self) -> RelayFrame {
        loop {
            match self.next_raw().await {
                Some(Message::Text(t)) => {
                    self.last_binary = false;
                    return RelayFrame::from_json(&t)
                        .unwrap_or_else(|e| panic!("relay sent an invalid JSON frame ({e}): {t}"));
                }
                Some(Message::Binary(b)) => {
                    self.last_binary = true;
                    return RelayFrame::from_binary(&b).unwrap_or_else(|e| {
                        panic!("relay sent an invalid binary frame ({e}): {b:02x?}")
                    });
                }
                Some(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Some(Message::Close(c)) => panic!("connection closed by the relay: {c:?}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Sends `m` while reading, until the connection closes (for frames the relay refuses to
    /// read to the end): whether the send went out, the data frames read, and the close frame.
    pub(crate) async fn send_while_reading(
        &mut self,
        m: Message,
    ) -> (bool, usize, Option<CloseFrame>) {
        let (mut tx, mut rx) = (&mut self.inner).split();
        let send = async move { matches!(tx.send(m).await, Ok(())) };
        let read = async move {
            let mut skipped = 0;
            loop {
                match rx.next().await {
                    Some(Ok(Message::Close(c))) => return (skipped, c),
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => skipped += 1,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return (skipped, None),
                }
            }
        };
        let (sent, (skipped, close)) = timeout(WAIT, async { tokio::join!(send, read) })
            .await
            .expect("the relay neither read the frame nor closed within the wait");
        (sent, skipped, close)
    }

    /// Reads until the connection closes: the data frames skipped, and the close frame (`None`
    /// when the stream ended without one, e.g. on a reset).
    pub(crate) async fn closed(&mut self) -> (usize, Option<CloseFrame>) {
        let mut skipped = 0;
        loop {
            match self.next_raw().await {
                Some(Message::Close(c)) => return (skipped, c),
                Some(Message::Text(_) | Message::Binary(_)) => skipped += 1,
                Some(_) => {}
                None => return (skipped, None),
            }
        }
    }

    /// Closes the connection politely and waits for the relay's side to end.
    pub(crate) async fn close(mut self) {
        let _ = timeout(WAIT, self.inner.close(None)).await;
        let _ = timeout(WAIT, async {
            while let Some(Ok(_)) = self.inner.next().await {}
        })
        .await;
    }

    /// Expects a `challenge`.
    pub(crate) async fn challenge(&mut self) -> Challenge {
        match self.recv().await {
            RelayFrame::Challenge { nonce, relay_id } => Challenge {
                nonce: nonce.as_slice().try_into().expect("32-byte nonce"),
                relay_id,
            },
            f => panic!("expected challenge, got {f:?}"),
        }
    }

    /// Expects an `error` with `code`; returns its message and id.
    pub(crate) async fn expect_error(&mut self, code: &str) -> (String, Option<MessageId>) {
        match self.recv().await {
            RelayFrame::Error {
                code: c,
                message,
                id,
            } if c.as_str() == code => (message, id),
            f => panic!("expected error {code}, got {f:?}"),
        }
    }

    /// Expects `sent`; returns (id, duplicate).
    pub(crate) async fn expect_sent(&mut self) -> (MessageId, bool) {
        match self.recv().await {
            RelayFrame::Sent { id, duplicate } => (id, duplicate),
            f => panic!("expected sent, got {f:?}"),
        }
    }

    /// Expects a `message`.
    pub(crate) async fn expect_message(&mut self) -> Msg {
        let f = self.recv().await;
        to_msg(f).unwrap_or_else(|f| panic!("expected message, got {f:?}"))
    }

    /// Collects `message` frames up to the next `fetched`.
    pub(crate) async fn page(&mut self) -> (Vec<Msg>, Fetched) {
        let mut msgs = Vec::new();
        loop {
            match self.recv().await {
                RelayFrame::Fetched {
                    count,
                    last_seq,
                    more,
                } => {
                    return (
                        msgs,
                        Fetched {
                            count,
                            last_seq,
                            more,
                        },
                    );
                }
                f => msgs.push(
                    to_msg(f).unwrap_or_else(|f| panic!("expected message or fetched, got {f:?}")),
                ),
            }
        }
    }

    /// `fetch {after, limit}` and its page.
    pub(crate) async fn fetch(
        &mut self,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> (Vec<Msg>, Fetched) {
        self.send(&ClientFrame::Fetch { after, limit }).await;
        self.page().await
    }

    /// Every message of the inbox after `after`, page by page.
    pub(crate) async fn fetch_all(&mut self, mut after: u64) -> Vec<Msg> {
        let mut all = Vec::new();
        loop {
            let (msgs, f) = self.fetch(Some(after), Some(500)).await;
            all.extend(msgs);
            match f.last_seq {
                Some(l) if f.more => after = l,
                _ => return all,
            }
        }
    }

    /// `ack` (no answer on success: follow with a `fetch` to know it was handled, as frames
    /// are handled in order).
    pub(crate) async fn ack(&mut self, ids: Vec<MessageId>) {
        self.send(&ClientFrame::Ack { ids }).await;
    }
}

/// A `message` frame as a [`Msg`], or the frame back.
pub(crate) fn to_msg(f: RelayFrame) -> Result<Msg, RelayFrame> {
    match f {
        RelayFrame::Message {
            id,
            seq,
            sender,
            crypto_mode,
            timestamp_ms,
            message,
        } => Ok(Msg {
            id,
            seq,
            sender: sender.map(|s| s.as_str().to_owned()),
            mode: crypto_mode,
            timestamp_ms,
            message,
        }),
        f => Err(f),
    }
}

/// A `send_message` frame.
pub(crate) fn send_frame(
    to: &str,
    message: &str,
    mode: CryptoMode,
    id: Option<MessageId>,
) -> ClientFrame {
    ClientFrame::SendMessage {
        recipient: Username::new(to).expect("valid recipient"),
        message: message.to_owned(),
        crypto_mode: mode,
        id,
    }
}

// ---------------------------------------------------------------------------------------------
// Users

/// What `auth` answered with: `auth_ok` and the first inbox page.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) pending: u64,
    pub(crate) msgs: Vec<Msg>,
    pub(crate) fetched: Fetched,
}

/// A user: a name and an identity.
pub(crate) struct User {
    pub(crate) name: Username,
    pub(crate) identity: Identity,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).finish()
    }
}

impl User {
    /// A new identity with keys for `min` and every stronger mode.
    pub(crate) fn new(name: &str, min: CryptoMode) -> Self {
        Self {
            name: Username::new(name).expect("valid username"),
            identity: Identity::generate(min, &mut OsRng).expect("identity"),
        }
    }

    /// The name as a string.
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The weakest mode this user holds keys for.
    pub(crate) fn mode(&self) -> CryptoMode {
        self.identity.min_mode()
    }

    /// Signs `content` with the `mode` key for `ctx`.
    pub(crate) fn sign(&self, mode: CryptoMode, ctx: SigContext, content: &[u8]) -> Vec<u8> {
        self.identity
            .sign(mode, ctx, content, &mut OsRng)
            .expect("sign")
            .as_bytes()
            .to_vec()
    }

    /// A registration body claiming this name, signed with the `mode` key.
    pub(crate) fn claim(&self, mode: CryptoMode) -> RegisterRequest {
        let bundle = self.identity.public_bundle();
        RegisterRequest {
            username: self.name.clone(),
            bundle: Bytes(bundle.to_bytes()),
            crypto_mode: mode,
            signature: Bytes(self.sign(
                mode,
                SigContext::ProofOfPossession,
                &claim_content(&self.name, bundle),
            )),
        }
    }

    /// Registers (expects 201).
    pub(crate) async fn register(&self, relay: &Relay) -> UserResponse {
        self.register_with(relay, self.mode()).await
    }

    /// Registers with the claim signed by the `mode` key (expects 201).
    pub(crate) async fn register_with(&self, relay: &Relay, mode: CryptoMode) -> UserResponse {
        let (status, body) = relay.post_json("/v1/users", &self.claim(mode)).await;
        assert_eq!(status, 201, "registering {}: {body}", self.name);
        serde_json::from_value(body).expect("UserResponse")
    }

    /// The `auth` answer to `ch` with the `mode` key.
    pub(crate) fn auth(&self, mode: CryptoMode, ch: &Challenge) -> ClientFrame {
        self.auth_as(&self.name, mode, ch)
    }

    /// An `auth` frame naming `claimed` but signed with this user's `mode` key.
    pub(crate) fn auth_as(
        &self,
        claimed: &Username,
        mode: CryptoMode,
        ch: &Challenge,
    ) -> ClientFrame {
        let content = auth_content(&ch.nonce, &ch.relay_fingerprint(), claimed);
        ClientFrame::Auth {
            username: claimed.clone(),
            crypto_mode: mode,
            signature: Bytes(self.sign(mode, SigContext::RelayAuth, &content)),
        }
    }

    /// Answers the next `challenge` on `ws` and expects `auth_ok` and the first inbox page.
    pub(crate) async fn login(&self, ws: &mut Ws, mode: CryptoMode) -> Login {
        let ch = ws.challenge().await;
        self.login_with(ws, mode, &ch).await
    }

    /// Answers `ch` and expects `auth_ok` and the first inbox page.
    pub(crate) async fn login_with(&self, ws: &mut Ws, mode: CryptoMode, ch: &Challenge) -> Login {
        ws.send(&self.auth(mode, ch)).await;
        let pending = match ws.recv().await {
            RelayFrame::AuthOk { username, pending } => {
                assert_eq!(username, self.name);
                pending
            }
            f => panic!("{}: expected auth_ok, got {f:?}", self.name),
        };
        let (msgs, fetched) = ws.page().await;
        Login {
            pending,
            msgs,
            fetched,
        }
    }

    /// Connects to `relay` and logs in with the user's weakest mode.
    pub(crate) async fn connect(&self, relay: &Relay) -> (Ws, Login) {
        let mut ws = relay.connect().await;
        let login = self.login(&mut ws, self.mode()).await;
        (ws, login)
    }
}
