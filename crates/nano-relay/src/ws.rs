//! The WebSocket listener and each connection's I/O loop: the pipeline's first stage.
//!
//! Accept → limits (connections, TLS and handshake within `connection_timeout_seconds`) →
//! `challenge` → a loop that reads frames (rate-limited, size-checked), answers them in order,
//! forwards hub events, pings an idle peer and closes with a reason on shutdown, idle timeout or
//! a full send queue. The loop holds at most `MAX_IN_FLIGHT` unanswered sends and one frame being
//! written, so a connection's memory is bounded whatever its peer does.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use nano_proto::binding::{TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN};
use nano_proto::{ChannelBinding, ClientFrame, ProtoError, RelayFrame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::RelayError;
use crate::hub::{Mailbox, SessionEvent};
use crate::login::Transport;
use crate::pools::{BufferPool, PooledBuf};
use crate::rate_limit::TokenBucket;
use crate::session::{Session, error_frame};
use crate::state::Shared;

/// Unanswered `send_message` frames one connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 256;
/// Longest a single frame write may take before the peer counts as a slow reader.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per connection: eagerly allocated, so it sets the floor of an idle connection's
/// memory (the transport's default of 128 KiB would cost 1.3 GB for 10,000 idle connections).
/// A larger frame grows the buffer to hold it, and the transport keeps that size: a hybrid
/// `auth` frame leaves about 5 KB (docs/BENCHMARKS.md §6, idle connections).
const READ_BUFFER: usize = 1024;
/// Frames written together are gathered up to this many bytes per write to the socket. The
/// buffer keeps its capacity, so this (plus one frame) is also what a connection may hold after
/// a burst.
const WRITE_BUFFER: usize = 16 * 1024;
/// Frames already waiting (answers, deliveries) gathered into one flush.
const WRITE_BATCH: usize = 64;
/// Connections refused politely at once; beyond this, excess sockets are simply dropped.
const MAX_REFUSALS: usize = 64;

/// Close reasons, stable for clients and tests.
pub mod close_reason {
    /// The relay holds `server.max_connections` connections.
    pub const AT_CAPACITY: &str = "relay at max_connections";
    /// The relay is shutting down.
    pub const SHUTDOWN: &str = "relay shutting down";
    /// No traffic for `limits.idle_timeout_seconds`.
    pub const IDLE: &str = "idle timeout";
    /// The send queue filled up.
    pub const SLOW_READER: &str = "slow reader: send queue full";
    /// The frame exceeded the transport limit.
    pub const TOO_BIG: &str = "frame too large";
    /// Pings or pongs beyond `security.rate_limit_per_connection`.
    pub const CONTROL_FLOOD: &str = "rate limit exceeded by control frames";
}

/// The close reason (code 1002) for a violation of RFC 6455 framing.
fn protocol_violation(p: &tokio_tungstenite::tungstenite::error::ProtocolError) -> &'static str {
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    match p {
        P::NonZeroReservedBits => "reserved bits set without a negotiated extension",
        P::UnmaskedFrameFromClient => "client frame not masked",
        P::FragmentedControlFrame => "fragmented control frame",
        P::ControlFrameTooBig => "control frame payload over 125 bytes",
        P::UnknownControlFrameType(_) | P::UnknownDataFrameType(_) => "unknown opcode",
        P::UnexpectedContinueFrame => "continuation frame without a first frame",
        P::ExpectedFragment(_) => "new data frame before the fragmented one ended",
        P::InvalidCloseSequence => "invalid close frame",
        _ => "protocol violation",
    }
}

fn ws_config(shared: &Shared) -> WebSocketConfig {
    // Frames up to twice the limit are read and answered with `frame_too_large`; beyond that the
    // transport refuses to buffer them and closes the connection.
    let max = shared.config.limits.max_frame_bytes * 2;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(max + 64 * 1024)
}

fn tune_socket(shared: &Shared, stream: &TcpStream) {
    let p = &shared.config.performance;
    let sock = socket2::SockRef::from(stream);
    let _ = stream.set_nodelay(p.tcp_nodelay);
    if p.tcp_keepalive {
        let ka = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(shared.config.server.keep_alive_seconds));
        let _ = sock.set_tcp_keepalive(&ka);
    }
    let _ = sock.set_send_buffer_size(p.socket_buffer_size);
    let _ = sock.set_recv_buffer_size(p.socket_buffer_size);
}

/// Accepts connections until shutdown; each runs on `tracker`.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(shared.config.server.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    loop {
        let (stream, addr) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tune_socket(&shared, &stream);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                tracker.spawn(async move {
                    shared.metrics.active_connections.inc();
                    connection(&shared, stream, addr, tls).await;
                    shared.metrics.active_connections.dec();
                    drop(slot);
                });
            }
            Err(_) => {
                shared
                    .metrics
                    .connections_refused
                    .with_label_values(&["max_connections"])
                    .inc();
                if let Ok(r) = Arc::clone(&refusals).try_acquire_owned() {
                    tracker.spawn(async move {
                        refuse(&shared, stream, tls).await;
                        drop(r);
                    });
                }
            }
        }
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    s: S,
) -> Option<WebSocketStream<S>> {
    tokio_tungstenite::accept_async_with_config(s, Some(ws_config(shared)))
        .await
        .ok()
}

async fn refuse(shared: &Shared, stream: TcpStream, tls: Option<TlsAcceptor>) {
    let t = Duration::from_secs(1);
    let _ = tokio::time::timeout(t, async {
        let close = CloseFrame {
            code: CloseCode::Again,
            reason: close_reason::AT_CAPACITY.into(),
        };
        match tls {
            Some(acc) => {
                if let Ok(s) = acc.accept(stream).await {
                    if let Some(mut ws) = handshake(shared, s).await {
                        let _ = ws.close(Some(close)).await;
                    }
                }
            }
            None => {
                if let Some(mut ws) = handshake(shared, stream).await {
                    let _ = ws.close(Some(close)).await;
                }
            }
        }
    })
    .await;
}

async fn connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let limit = Duration::from_secs(shared.config.server.connection_timeout_seconds);
    // Each phase is boxed on its own: the handshakes' state (TLS, HTTP upgrade) is several
    // kilobytes and lives only until the upgrade, and the task then holds only the loop's state,
    // sized for its own transport. The upgraded stream is only ever a closure argument: bound in
    // this fn's body, it would keep a slot in the task's state after moving into the loop.
    let ip = addr.ip();
    let handshake = async {
        match tls {
            Some(acc) => boxed_within(limit, || async {
                let s = acc.accept(stream).await.ok()?;
                let binding = tls_exporter(s.get_ref().1)?;
                Some((handshake(shared, s).await?, binding))
            })
            .await
            .ok()
            .flatten()
            .map(|(ws, binding)| session_loop(shared, ws, Transport::new(binding, ip))),
            None => boxed_within(limit, || handshake(shared, stream))
                .await
                .ok()
                .flatten()
                .map(|ws| session_loop(shared, ws, Transport::new(ChannelBinding::None, ip))),
        }
    };
    // A client still in its handshake at shutdown is simply dropped: it has nothing to drain.
    let session = tokio::select! {
        s = handshake => s,
        _ = shared.shutdown.cancelled() => return,
    };
    if let Some(s) = session {
        s.await;
    }
}

/// The connection's RFC 9266 `tls-exporter` channel binding (`None` if rustls cannot export,
/// which it can on every established TLS 1.3 connection).
fn tls_exporter(tls: &rustls::ServerConnection) -> Option<ChannelBinding> {
    let out = [0u8; TLS_EXPORTER_LEN];
    tls.export_keying_material(out, TLS_EXPORTER_LABEL, Some(&[]))
        .ok()
        .map(ChannelBinding::TlsExporter)
}

/// The connection's loop on the heap, whatever its transport.
fn session_loop<'a, S>(
    shared: &'a Arc<Shared>,
    ws: WebSocketStream<S>,
    transport: Transport,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    Box::pin(run(shared, Conn::new(shared, ws), transport))
}

/// The future `f` makes, limited to `limit`, built straight on the heap (a future built in an
/// async fn's body would be laid out in that fn's own state as well).
fn boxed_within<F: Future>(
    limit: Duration,
    f: impl FnOnce() -> F,
) -> Pin<Box<tokio::time::Timeout<F>>> {
    Box::pin(tokio::time::timeout(limit, f()))
}

/// Encodes `frame` into a pooled buffer that returns to its pool once the transport has written
/// it.
fn encode(frame: &RelayFrame, binary: bool, pool: Option<&Arc<BufferPool>>) -> Message {
    let mut buf = pool.map_or_else(PooledBuf::unpooled, BufferPool::take);
    let written = if binary {
        frame.write_binary(&mut buf.buf)
    } else {
        frame.write_json(&mut buf.buf)
    };
    let fallback =
        || Message::Text(r#"{"type":"error","code":"internal","message":"internal error"}"#.into());
    if let Err(e) = written {
        tracing::error!(error = %e, frame = frame.type_name(), "cannot encode an outgoing frame");
        return fallback();
    }
    let bytes = bytes::Bytes::from_owner(buf);
    if binary {
        Message::Binary(bytes)
    } else {
        // serde_json writes UTF-8; the check cannot fail.
        Utf8Bytes::try_from(bytes).map_or_else(|_| fallback(), Message::Text)
    }
}

/// Why the loop ended: the close frame to send, if any.
enum End {
    Close(CloseCode, &'static str),
    /// The peer sent a close frame: the echo goes out, completing the closing handshake.
    PeerClosed,
    Gone,
}

struct Conn<S> {
    ws: WebSocketStream<S>,
    binary: bool,
    pool: Option<Arc<BufferPool>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(shared: &Shared, ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            binary: false,
            pool: shared.buffers.clone(),
        }
    }

    async fn send(&mut self, frames: Vec<RelayFrame>) -> Result<(), End> {
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            let m = encode(f, self.binary, self.pool.as_ref());
            // Batched writes: one flush after the last frame of a group.
            let r = if i + 1 == n {
                tokio::time::timeout(WRITE_TIMEOUT, self.ws.send(m)).await
            } else {
                tokio::time::timeout(WRITE_TIMEOUT, self.ws.feed(m)).await
            };
            match r {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Gone),
                Err(_) => return Err(End::Close(CloseCode::Policy, close_reason::SLOW_READER)),
            }
        }
        Ok(())
    }
}

/// The connection's life after the upgrade. `conn` is taken whole (an async fn keeps its
/// arguments in its state, so a stream moved into a local would be held twice).
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    mut conn: Conn<S>,
    transport: Transport,
) {
    let limits = &shared.config.limits;
    let (mailbox, mut events) = Mailbox::new(limits.send_queue_depth, limits.send_queue_bytes);
    let kill = mailbox.kill.clone();
    let ip = transport.peer;
    let mut session = Session::new(Arc::clone(shared), transport, mailbox);
    let end = drive(shared, &mut session, &mut conn, &mut events, &kill, ip).await;
    let closing = Duration::from_secs(2);
    match end {
        End::Close(code, reason) => {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(closing, conn.ws.close(Some(frame))).await;
        }
        // Flushes the echo the transport queued (sending a close of our own is not allowed
        // once the peer's arrived).
        End::PeerClosed => {
            let _ = tokio::time::timeout(closing, SinkExt::close(&mut conn.ws)).await;
        }
        End::Gone => {}
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    session: &mut Session,
    conn: &mut Conn<S>,
    events: &mut mpsc::Receiver<SessionEvent>,
    kill: &CancellationToken,
    ip: IpAddr,
) -> End {
    let sec = &shared.config.security;
    let mut bucket = TokenBucket::new(
        sec.rate_limit_per_connection,
        sec.rate_limit_burst,
        shared.clock_now(),
    );
    let mut control_bucket = TokenBucket::new(
        sec.rate_limit_per_connection,
        sec.rate_limit_burst,
        shared.clock_now(),
    );
    let idle = Duration::from_secs(shared.config.limits.idle_timeout_seconds);
    let mut last_seen = Instant::now();
    let mut tick = tokio::time::interval(idle / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = FuturesOrdered::new();
    let max_frame = shared.config.limits.max_frame_bytes;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {
                // Answers already committed still go out before the close.
                while let Some(f) = pending.next().await {
                    if let Err(e) = conn.send(vec![f]).await { return e; }
                }
                return End::Close(CloseCode::Away, close_reason::SHUTDOWN);
            }
            _ = kill.cancelled() => {
                shared.metrics.connections_refused.with_label_values(&["slow_reader"]).inc();
                return End::Close(CloseCode::Policy, close_reason::SLOW_READER);
            }
            Some(f) = pending.next(), if !pending.is_empty() => {
                // Answers of one committed batch are ready together: one flush for all of them.
                let mut frames = vec![f];
                while frames.len() < WRITE_BATCH {
                    match pending.next().now_or_never() {
                        Some(Some(f)) => frames.push(f),
                        _ => break,
                    }
                }
                if let Err(e) = conn.send(frames).await { return e; }
            }
            Some(ev) = events.recv() => {
                // Boxed: the handlers' state lives only while they run, not for the connection's life.
                let mut frames = Box::pin(session.on_event(ev)).await;
                while frames.len() < WRITE_BATCH {
                    match events.try_recv() {
                        Ok(ev) => frames.extend(Box::pin(session.on_event(ev)).await),
                        Err(_) => break,
                    }
                }
                if let Err(e) = conn.send(frames).await { return e; }
            }
            _ = tick.tick() => {
                let quiet = last_seen.elapsed();
                if quiet >= idle {
                    return End::Close(CloseCode::Normal, close_reason::IDLE);
                }
                if quiet >= idle / 3
                    && tokio::time::timeout(WRITE_TIMEOUT, conn.ws.send(Message::Ping(Vec::new().into()))).await.is_err() {
                    return End::Close(CloseCode::Policy, close_reason::SLOW_READER);
                }
            }
            msg = conn.ws.next(), if pending.len() < MAX_IN_FLIGHT => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                        return End::Close(CloseCode::Size, close_reason::TOO_BIG);
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Utf8(_))) => {
                        return End::Close(CloseCode::Invalid, "text frame is not UTF-8");
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(p))) => {
                        return End::Close(CloseCode::Protocol, protocol_violation(&p));
                    }
                    _ => return End::Gone,
                };
                last_seen = Instant::now();
                // Control frames are metered too (a ping flood would otherwise cost a pong each),
                // on a budget of their own: a client at its data rate may still answer the
                // relay's pings. They cannot be answered with an error frame (that would answer a
                // flood with one), so only a flood of them closes the connection.
                if matches!(msg, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) {
                    if control_bucket.try_take(shared.clock_now()) {
                        continue;
                    }
                    shared.metrics.error(nano_proto::ErrorCode::RateLimited);
                    shared.metrics.connections_refused.with_label_values(&["rate_limited"]).inc();
                    return End::Close(CloseCode::Policy, close_reason::CONTROL_FLOOD);
                }
                let (decoded, len) = match &msg {
                    Message::Text(t) => {
                        conn.binary = false;
                        (Some(t.len()).filter(|l| *l <= max_frame).map(|_| ClientFrame::from_json(t)), t.len())
                    }
                    Message::Binary(b) => {
                        conn.binary = true;
                        (Some(b.len()).filter(|l| *l <= max_frame).map(|_| ClientFrame::from_binary(b)), b.len())
                    }
                    // The peer's close: the transport queued the echo of its code.
                    _ => return End::PeerClosed,
                };
                if !(bucket.try_take(shared.clock_now()) && shared.address_allows(ip)) {
                    // A refused send names its id, so the client can write it again later.
                    let id = match &decoded {
                        Some(Ok(ClientFrame::SendMessage { id, .. })) => *id,
                        _ => None,
                    };
                    let f = error_frame(shared, &RelayError::RateLimited, id);
                    if let Err(e) = conn.send(vec![f]).await { return e; }
                    continue;
                }
                let frame = match decoded {
                    None => Err(ProtoError::FrameTooLarge { max: max_frame, got: len }),
                    Some(r) => r,
                };
                let out = match frame {
                    Ok(f) => Box::pin(session.handle(f)).await,
                    Err(e) => vec![error_frame(shared, &RelayError::Proto(e), None)].into(),
                };
                if let Some(p) = out.pending {
                    pending.push_back(p);
                }
                if !out.frames.is_empty() {
                    if let Err(e) = conn.send(out.frames).await { return e; }
                }
            }
        }
    }
}
