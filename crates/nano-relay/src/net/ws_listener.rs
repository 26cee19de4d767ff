//! The WebSocket listener: the pipeline's first stage.
//!
//! Accept → the connection cap (`server.max_connections`; beyond it a polite 1013 close) → TLS
//! (its RFC 9266 channel binding taken for the login) and the WebSocket upgrade, both within
//! `connection_timeout_seconds` → one task per connection running [`super::connection`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nano_proto::ChannelBinding;
use nano_proto::binding::{TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::task::TaskTracker;

use crate::protocol::login::Transport;
use crate::state::Shared;

use super::connection::{close_reason, session_loop};

/// Read buffer per connection: eagerly allocated, so it sets the floor of an idle connection's
/// memory (the transport's default of 128 KiB would cost 1.3 GB for 10,000 idle connections).
/// A larger frame grows the buffer to hold it, and the transport keeps that size: a hybrid
/// `auth` frame leaves about 5 KB (docs/BENCHMARKS.md §6, idle connections).
const READ_BUFFER: usize = 1024;
/// Frames written together are gathered up to this many bytes per write to the socket. The
/// buffer keeps its capacity, so this (plus one frame) is also what a connection may hold after
/// a burst.
const WRITE_BUFFER: usize = 16 * 1024;
/// Connections refused politely at once; beyond this, excess sockets are simply dropped.
const MAX_REFUSALS: usize = 64;

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
pub(crate) async fn serve(
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
                if let Ok(s) = acc.accept(stream).await
                    && let Some(mut ws) = handshake(shared, s).await
                {
                    let _ = ws.close(Some(close)).await;
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

/// The future `f` makes, limited to `limit`, built straight on the heap (a future built in an
/// async fn's body would be laid out in that fn's own state as well).
fn boxed_within<F: Future>(
    limit: Duration,
    f: impl FnOnce() -> F,
) -> Pin<Box<tokio::time::Timeout<F>>> {
    Box::pin(tokio::time::timeout(limit, f()))
}
