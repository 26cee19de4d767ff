//! Harness of the end-to-end tests: runs the real `nano-relay` binary on loopback with a
//! generated configuration in a fresh temporary directory (the process side lives in
//! `nano-testkit`), and talks to it over HTTP and WebSocket like a client would.
//!
//! ```text
//! Config   relay.toml builder (nano_testkit::Config)
//! Relay    the child process (nano_testkit::RelayProcess, reached through Deref) with an HTTP
//!          client; start, kill -9, SIGTERM and restart run off the async threads
//! PgDb     a fresh PostgreSQL database per test (nano_testkit::PgDb)
//! Ws       a WebSocket client: frames out (JSON or binary), frames in with a timeout
//! User     an identity: registration, auth answers, login
//! ```
//!
//! Every wait is bounded by [`WAIT`]; nothing asserts on timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nano_crypto::{CryptoMode, Fingerprint, Identity, OsRng, SigContext};
use nano_proto::rest::{RegisterRequest, RelayInfo, UserResponse, claim_content};
use nano_proto::signed::{Login as LoginTranscript, auth_content};
use nano_proto::{
    BindingKind, Bytes, ChannelBinding, ClientFrame, MessageId, Payload, RelayFrame, Username,
};
use nano_testkit::RelayProcess;
// Not every test binary uses every helper (as with `dead_code` above).
#[allow(unused_imports)]
pub(crate) use nano_testkit::{
    Config, PgDb, redis_cleanup, redis_prefix, redis_url, wait_for_subscribers,
};
use rand_core::RngCore;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of every single wait (a frame, a request, the relay's start or exit).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A fresh random message id.
pub(crate) fn random_id() -> MessageId {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    MessageId(b)
}

/// The path of the `nano-relay` binary under test.
pub(crate) fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nano-relay")
}

/// A `Command` for the relay binary with the relay's environment overrides removed.
pub(crate) fn relay_command() -> Command {
    nano_testkit::relay_command(Path::new(relay_bin()))
}

/// Runs `cmd` to completion (bounded by [`WAIT`]) with its output captured.
pub(crate) fn output_within(cmd: &mut Command) -> std::process::Output {
    nano_testkit::run_within(cmd, None, WAIT)
}

/// Runs `f` (with `what` as its input) on a blocking thread, so the test's async tasks keep
/// running; a panic in `f` is the caller's panic.
async fn off_thread<S: Send + 'static, T: Send + 'static>(
    what: S,
    f: impl FnOnce(S) -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(move || f(what)).await {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Starts one relay and registers alice and bob (both classical) on it.
pub(crate) async fn start_with_alice_and_bob(cfg: &Config) -> (Relay, User, User) {
    let relay = Relay::start(cfg).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    alice.register(&relay).await;
    bob.register(&relay).await;
    (relay, alice, bob)
}

/// Two `#[tokio::test]`s running `$flow(cfg)`: `$sqlite` on [`Config::new`] (SQLite in the
/// relay's temp dir), `$postgres` on a database of its own (skipped without
/// `NANO_TEST_POSTGRES_URL`, see [`PgDb::create`]).
#[macro_export]
macro_rules! on_each_storage {
    ($flow:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $flow($crate::relay_common::Config::new()).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let Some(db) = $crate::relay_common::PgDb::create(stringify!($postgres)) else {
                return;
            };
            $flow($crate::relay_common::Config::new().storage_url(&db.url)).await;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The relay process

/// A running `nano-relay` child process (killed on drop) and an HTTP client for its API. The
/// process's fields and methods (`api`, `ws`, `dir`, `pid`, `kill9`, `logs`…) are reached
/// through `Deref`.
#[derive(Debug)]
pub(crate) struct Relay {
    process: Option<RelayProcess>,
    http: reqwest::Client,
}

impl Deref for Relay {
    type Target = RelayProcess;

    fn deref(&self) -> &RelayProcess {
        self.process.as_ref().expect("relay process")
    }
}

impl DerefMut for Relay {
    fn deref_mut(&mut self) -> &mut RelayProcess {
        self.process.as_mut().expect("relay process")
    }
}

impl Relay {
    /// Writes `cfg` into a fresh temp dir and starts the relay on it.
    pub(crate) async fn start(cfg: &Config) -> Self {
        let cfg = cfg.clone();
        let process = off_thread(cfg, |cfg| {
            RelayProcess::start(Path::new(relay_bin()), &cfg, WAIT)
        })
        .await;
        Self {
            process: Some(process),
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("HTTP client"),
        }
    }

    /// Runs `f` on the process off the async threads.
    async fn with_process<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut RelayProcess) -> T + Send + 'static,
    ) -> T {
        let process = self.process.take().expect("relay process");
        let (process, out) = off_thread(process, |mut p| {
            let out = f(&mut p);
            (p, out)
        })
        .await;
        self.process = Some(process);
        out
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        self.with_process(RelayProcess::terminate).await
    }

    /// Sends `signal` (`-TERM`, `-INT`) with `kill`, then waits (bounded) for the exit status.
    pub(crate) async fn signal(&mut self, signal: &'static str) -> ExitStatus {
        self.with_process(move |p| p.signal(signal)).await
    }

    /// Starts the relay again on the same configuration, data dir and database (new ports).
    pub(crate) async fn restart(&mut self) {
        self.with_process(RelayProcess::restart).await;
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

    /// Sends a JSON body with `method`: status and JSON body.
    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        let (s, b) = self
            .request(
                self.http
                    .request(method, format!("{}{path}", self.api))
                    .json(body),
            )
            .await;
        (s, parse_json(&b))
    }

    /// POST a JSON body.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// PUT a JSON body.
    pub(crate) async fn put_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::PUT, path, body).await
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
        let (s, b) = self.request_raw("POST", path, body).await;
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
// WebSocket client

/// A delivered `message` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Msg {
    pub(crate) id: MessageId,
    pub(crate) seq: u64,
    pub(crate) sender: Option<String>,
    pub(crate) mode: CryptoMode,
    pub(crate) timestamp_ms: u64,
    pub(crate) message: Received,
}

/// A delivered payload. It equals a string when that string, as a JSON `message`, means the
/// same bytes (`Payload::from_json_text`): tests send strings (text, or the base64 of an
/// envelope) and compare what arrives with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received(pub(crate) Payload);

impl PartialEq<str> for Received {
    fn eq(&self, other: &str) -> bool {
        self.0 == Payload::from_json_text(other)
    }
}

impl PartialEq<&str> for Received {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Received {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

/// A `fetched` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) count: u32,
    pub(crate) last_seq: Option<u64>,
    pub(crate) more: bool,
}

/// A `challenge` frame, with the `hello` it answered and the connection's binding.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    pub(crate) nonce: [u8; 32],
    pub(crate) relay_id: String,
    pub(crate) mode: CryptoMode,
    pub(crate) channel_binding: BindingKind,
    pub(crate) signature: Vec<u8>,
    /// The `hello` nonce it answers.
    pub(crate) client_nonce: [u8; 32],
    /// The binding of the connection it came on, as this end computes it.
    pub(crate) binding: ChannelBinding,
}

impl Challenge {
    /// The same challenge with another relay nonce (an answer to it is wrong).
    pub(crate) fn clone_with_other_nonce(&self) -> Self {
        let mut c = self.clone();
        c.nonce[0] ^= 0xff;
        c
    }

    /// The transcript both signatures cover.
    pub(crate) fn login(&self) -> LoginTranscript<'_> {
        LoginTranscript {
            relay_nonce: &self.nonce,
            client_nonce: &self.client_nonce,
            binding: self.binding,
        }
    }

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

    /// Sends `hello` in hybrid mode (at or above every floor the tests use) and expects a
    /// `challenge`.
    pub(crate) async fn challenge(&mut self) -> Challenge {
        self.challenge_in(CryptoMode::Hybrid).await
    }

    /// Sends `hello` for a relay signature of `mode` and expects a `challenge`.
    pub(crate) async fn challenge_in(&mut self, mode: CryptoMode) -> Challenge {
        let client_nonce = self.hello(mode).await;
        let f = self.recv().await;
        self.challenge_of(f, client_nonce)
            .unwrap_or_else(|f| panic!("expected challenge, got {f:?}"))
    }

    /// Sends `hello` with a fresh nonce (a send that fails is ignored: the relay may be
    /// closing the connection); returns the nonce.
    pub(crate) async fn hello(&mut self, mode: CryptoMode) -> [u8; 32] {
        let mut client_nonce = [0u8; 32];
        OsRng.fill_bytes(&mut client_nonce);
        let hello = ClientFrame::Hello {
            crypto_mode: mode,
            nonce: Bytes(client_nonce.to_vec()),
        };
        let m = self.encode(&hello);
        self.try_send_raw(m).await;
        client_nonce
    }

    /// `f` as the `challenge` answering the `hello` with `client_nonce` on this connection.
    pub(crate) fn challenge_of(
        &self,
        f: RelayFrame,
        client_nonce: [u8; 32],
    ) -> Result<Challenge, RelayFrame> {
        match f {
            RelayFrame::Challenge {
                nonce,
                relay_id,
                crypto_mode,
                channel_binding,
                signature,
            } => Ok(Challenge {
                nonce: nonce.as_slice().try_into().expect("32-byte nonce"),
                relay_id,
                mode: crypto_mode,
                channel_binding,
                signature: signature.0,
                client_nonce,
                binding: self.binding(),
            }),
            f => Err(f),
        }
    }

    /// This connection's channel binding (RFC 9266 `tls-exporter` over TLS).
    pub(crate) fn binding(&self) -> ChannelBinding {
        match self.inner.get_ref() {
            MaybeTlsStream::Plain(_) => ChannelBinding::None,
            #[allow(unreachable_patterns)]
            _ => panic!("the relay tests speak plain WebSocket"),
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

    /// Sends `message` to `to` in `mode` (with `id`, if any) and expects `sent`; returns
    /// (id, duplicate).
    pub(crate) async fn send_message(
        &mut self,
        to: &str,
        message: &str,
        mode: CryptoMode,
        id: Option<MessageId>,
    ) -> (MessageId, bool) {
        self.send(&send_frame(to, message, mode, id)).await;
        self.expect_sent().await
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
            message: Received(message),
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
        message: Payload::from_json_text(message),
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
        let content = auth_content(&ch.relay_fingerprint(), &ch.login(), claimed);
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
            RelayFrame::AuthOk {
                username, pending, ..
            } => {
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
