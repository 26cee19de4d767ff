//! The HTTP API's listener: accepts connections on `api_port` (over TLS when `[tls]` is
//! enabled), serves each with HTTP/1.1, and bounds what any client can hold:
//!
//! - at most `limits.max_http_connections` connections at once; beyond that, accepting waits
//!   for one to close (the kernel's backlog holds the rest); while fewer than a quarter of
//!   the slots are free, answers close their connection instead of keeping it alive;
//! - the TLS handshake within `server.connection_timeout_seconds`;
//! - a complete request head within `limits.http_header_timeout_seconds` of the connection
//!   opening or of its previous response, so a silent client, a half-sent request line and an
//!   idle keep-alive connection are all closed after that long;
//! - the whole request (body read and handling) within `limits.http_request_timeout_seconds`,
//!   answered `408 request_timeout` otherwise (see `http::router`);
//! - every write making progress within that same time: a client that stops reading its
//!   answers (pipelining requests into a full socket) is disconnected.
//!
//! Shutdown: the listener stops accepting, idle connections close at once, a request in
//! progress gets its answer, and whatever is left after [`DRAIN`] is dropped, so no client can
//! hold the process open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::Shared;

/// Longest a connection may take to finish its request once shutdown has begun.
pub(crate) const DRAIN: Duration = Duration::from_secs(5);

/// Accepts API connections until `stop`, each on `tracker`; returns once `stop` is cancelled.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = &shared.config.limits;
    let slots = Arc::new(Semaphore::new(limits.max_http_connections));
    let router = close_when_crowded(router, Arc::clone(&slots), limits.max_http_connections);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.http_header_timeout_seconds))
        .keep_alive(true);
    let handshake = Duration::from_secs(shared.config.server.connection_timeout_seconds);
    let stall = Duration::from_secs(limits.http_request_timeout_seconds);
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    crate::telemetry::log_limit::warn("API accept failed", &e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (http, router, stop, tls) = (http.clone(), router.clone(), stop.clone(), tls.clone());
        tracker.spawn(async move {
            match tls {
                Some(acc) => {
                    if let Ok(Ok(s)) = tokio::time::timeout(handshake, acc.accept(stream)).await {
                        connection(&http, WriteDeadline::new(s, stall), router, &stop).await;
                    }
                }
                None => connection(&http, WriteDeadline::new(stream, stall), router, &stop).await,
            }
            drop(slot);
        });
    }
}

/// `router` answering with `Connection: close` while fewer than a quarter of the
/// `max` connection slots are free: keep-alive is for a quiet relay, and idle keep-alive
/// connections of many clients must not fill the slots while new clients wait in the backlog
/// past their connect timeout (a burst of thousands of connecting clients did exactly that).
fn close_when_crowded(router: axum::Router, slots: Arc<Semaphore>, max: usize) -> axum::Router {
    let low = max / 4;
    router.layer(axum::middleware::map_response(
        move |mut r: axum::response::Response| {
            let crowded = slots.available_permits() < low;
            async move {
                if crowded {
                    r.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                r
            }
        },
    ))
}

/// Serves one connection until it closes, or until shutdown plus [`DRAIN`].
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    http: &hyper::server::conn::http1::Builder,
    stream: S,
    router: axum::Router,
    stop: &CancellationToken,
) {
    let service = TowerToHyperService::new(router);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}

/// A stream whose writes must make progress within `limit`: a write (or flush) that stays
/// pending longer fails with `TimedOut`, which ends the connection.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Maps a write's poll result: progress clears the deadline, pending starts it (once).
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(v) => {
                self.stalled = None;
                Poll::Ready(v)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
