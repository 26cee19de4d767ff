//! One connection's I/O loop: reads frames (rate-limited, size-checked) into the
//! [`Session`], writes its answers in order (`protocol::replies`: a `send_message` is answered
//! when its batch commits, later answers wait behind it), forwards hub events, pings an
//! idle peer and closes with a reason on shutdown, idle timeout or a full send queue. The loop
//! holds at most `protocol::replies::MAX_IN_FLIGHT` unanswered sends and one frame being written, so a
//! connection's memory is bounded whatever its peer does.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nano_proto::{ClientFrame, ProtoError, RelayFrame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::delivery::hub::{Events, Mailbox};
use crate::net::rate_limit::TokenBucket;
use crate::pools::{BufferPool, PooledBuf};
use crate::protocol::Session;
use crate::protocol::login::Transport;
use crate::protocol::replies::Replies;
use crate::state::Shared;

/// Longest a single frame write may take before the peer counts as a slow reader.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames already waiting (answers, deliveries) gathered into one flush.
const WRITE_BATCH: usize = 64;

/// Close reasons, stable for clients and tests.
pub(crate) mod close_reason {
    /// The relay holds `server.max_connections` connections.
    pub(crate) const AT_CAPACITY: &str = "relay at max_connections";
    /// The relay is shutting down.
    pub(crate) const SHUTDOWN: &str = "relay shutting down";
    /// No traffic for `limits.idle_timeout_seconds`.
    pub(crate) const IDLE: &str = "idle timeout";
    /// The send queue filled up.
    pub(crate) const SLOW_READER: &str = "slow reader: send queue full";
    /// The frame exceeded the transport limit.
    pub(crate) const TOO_BIG: &str = "frame too large";
    /// Pings or pongs beyond `security.rate_limit_per_connection`.
    pub(crate) const CONTROL_FLOOD: &str = "rate limit exceeded by control frames";
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

/// The connection's loop on the heap, whatever its transport.
pub(crate) fn session_loop<'a, S>(
    shared: &'a Arc<Shared>,
    ws: WebSocketStream<S>,
    transport: Transport,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    Box::pin(run(shared, Conn::new(shared, ws), transport))
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
    events: &mut Events,
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
    let mut replies = Replies::default();
    let max_frame = shared.config.limits.max_frame_bytes;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {
                // Answers already committed still go out before the close.
                let frames = replies.drain().await;
                if !frames.is_empty()
                    && let Err(e) = conn.send(frames).await { return e; }
                return End::Close(CloseCode::Away, close_reason::SHUTDOWN);
            }
            _ = kill.cancelled() => {
                shared.metrics.connections_refused.with_label_values(&["slow_reader"]).inc();
                return End::Close(CloseCode::Policy, close_reason::SLOW_READER);
            }
            frames = replies.ready(WRITE_BATCH), if !replies.is_empty() => {
                // Answers of one committed batch are ready together: one flush for all of them.
                if let Err(e) = conn.send(frames).await { return e; }
            }
            ev = events.recv() => {
                // Boxed: the handlers' state lives only while they run, not for the connection's life.
                let mut frames = Box::pin(session.on_event(ev)).await;
                while frames.len() < WRITE_BATCH {
                    match events.try_recv() {
                        Some(ev) => frames.extend(Box::pin(session.on_event(ev)).await),
                        None => break,
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
            msg = conn.ws.next(), if !replies.is_full() => {
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
                    let f = session.rate_limited(decoded.as_ref().and_then(|d| d.as_ref().ok()));
                    if let Err(e) = conn.send(vec![f]).await { return e; }
                    continue;
                }
                let frame = match decoded {
                    None => Err(ProtoError::FrameTooLarge { max: max_frame, got: len }),
                    Some(r) => r,
                };
                let out = Box::pin(session.handle_decoded(frame)).await;
                if let Some(p) = out.pending {
                    replies.push(p);
                }
                if !out.frames.is_empty()
                    && let Err(e) = conn.send(out.frames).await { return e; }
            }
        }
    }
}
