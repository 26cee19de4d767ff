//! Starting and stopping a relay: everything `main` does apart from parsing arguments and
//! building the runtime, so tests and benchmarks can run a relay in-process too.
//!
//! Shutdown, in order: `/ready` answers 503; the WebSocket listener stops accepting; every
//! session sends the answers already committed and closes with a reason; the batch writer commits
//! what is queued and stops; background tasks stop; the HTTP API stops last.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nano_crypto::{CryptoAcceleration, MonotonicClock, SecureAllocator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{RelayConfig, ValidConfig};
use crate::crypto::auth_verifier::AuthVerifier;
use crate::crypto::kex::KexService;
use crate::crypto::pool::CryptoPool;
use crate::delivery::fanout::Fanout;
use crate::delivery::hub::Hub;
use crate::delivery::writer::{self, WriterConfig};
use crate::directory::Directory;
use crate::directory::l2_cache::RedisCache;
use crate::error::{RelayError, StartupError};
use crate::net::rate_limit::{AddressLimiter, KeyedLimiter};
use crate::pools::{BufferPool, KeyPool};
use crate::state::Shared;
use crate::telemetry::metrics::Metrics;

/// Addresses tracked by the per-address rate limiter.
const MAX_TRACKED_ADDRESSES: usize = 65_536;
/// Jobs the crypto pool admits at once.
const CRYPTO_QUEUE: usize = 4_096;
/// Longest wait for sessions (and background tasks) to close at shutdown.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the batch writers to commit what is queued once sessions are gone.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started relay.
#[derive(Debug)]
pub struct RunningRelay {
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// Where the WebSocket port listens.
    pub ws_addr: SocketAddr,
    shared: Arc<Shared>,
    sessions: TaskTracker,
    background: TaskTracker,
    writer: writer::Stopped,
    http: tokio::task::JoinHandle<()>,
    http_stop: CancellationToken,
    http_tasks: TaskTracker,
    fanout: Option<Arc<Fanout>>,
    profiler: Option<Arc<AtomicBool>>,
}

fn io(what: &str, e: std::io::Error) -> StartupError {
    StartupError::Io {
        path: what.to_owned(),
        reason: e.to_string(),
    }
}

fn ws_url(cfg: &RelayConfig, addr: SocketAddr) -> String {
    if let Some(u) = &cfg.server.public_websocket_url {
        return u.clone();
    }
    let scheme = if cfg.tls.enabled { "wss" } else { "ws" };
    let ip = addr.ip();
    // The self-signed certificate names localhost; a wildcard bind is reached via localhost.
    let host = if ip.is_unspecified() || (cfg.tls.self_signed && ip.is_loopback()) {
        "localhost".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Starts a relay for `config` on the current Tokio runtime.
pub async fn start(config: ValidConfig) -> Result<RunningRelay, StartupError> {
    let mem = &config.memory;
    SecureAllocator::global().configure(
        mem.use_secure_allocator,
        mem.max_locked_memory_mb.saturating_mul(1024 * 1024),
    );
    let data_dir = config.storage.data_dir.clone();
    let url = config.storage.url.clone();
    let pool_size = config.storage.pool_size as usize;
    let (identity, storage) = tokio::task::spawn_blocking(move || {
        let identity = crate::crypto::identity::load_or_create(&data_dir)?;
        let storage = crate::storage::open(url.expose(), pool_size)?;
        Ok::<_, StartupError>((identity, storage))
    })
    .await
    .map_err(|e| RelayError::Internal(e.to_string()))??;
    let identity = Arc::new(identity);
    let metrics = Metrics::new(
        config.debug.detailed_metrics,
        config.debug.log_crypto_operations,
    )?;
    let c = &config.caching;
    let l2 = match (&c.enable_l2_cache, &c.l2_cache_url) {
        (true, Some(url)) => {
            let (url, prefix, ttl) = (url.clone(), c.l2_key_prefix.clone(), c.l2_cache_ttl_seconds);
            let cache = tokio::task::spawn_blocking(move || {
                RedisCache::connect(url.expose(), &prefix, ttl, Duration::from_secs(2))
            })
            .await
            .map_err(|e| RelayError::Internal(e.to_string()))??;
            Some(Arc::new(cache))
        }
        _ => None,
    };
    let l1 = c
        .enable_l1_cache
        .then(|| (c.l1_cache_size, Duration::from_secs(c.l1_cache_ttl_seconds)));
    let directory = Arc::new(Directory::new(
        Arc::clone(&storage),
        l1,
        l2.clone(),
        metrics.clone(),
    ));
    let hub = Arc::new(Hub::default());
    let fanout = match &l2 {
        Some(cache) => Some(
            Fanout::start(Arc::clone(cache), Arc::clone(&hub), Arc::clone(&directory))
                .map_err(|e| io("fan-out threads", e))?,
        ),
        None => None,
    };
    let p = &config.performance;
    let (writer_handle, writer_task) = writer::spawn(
        Arc::clone(&storage),
        WriterConfig {
            batch_size: p.message_batch_size,
            batch_timeout: Duration::from_millis(p.message_batch_timeout_ms),
            inbox_quota: config.limits.inbox_quota,
            // Enough for every connection to have a few sends queued; beyond it, senders wait.
            queue_capacity: (p.message_batch_size * 8).max(1024),
        },
        Arc::clone(&hub),
        fanout.clone(),
        metrics.clone(),
    )
    .map_err(|e| io("batch writer thread", e))?;
    let crypto = Arc::new(CryptoPool::new(config.server.worker_threads, CRYPTO_QUEUE)?);
    let auth = AuthVerifier::spawn(Arc::clone(&crypto));
    let kex_ttl = Duration::from_secs(p.key_cache_ttl_seconds);
    let m = &config.memory;
    let key_pool = m.enable_memory_pools.then(|| {
        let modes: Vec<_> = config.security.minimum_crypto_mode.and_stronger().collect();
        let pool = KeyPool::new(m.key_pool_size, &modes, Arc::clone(&crypto));
        pool.warm();
        pool
    });
    let buffers = m
        .enable_memory_pools
        .then(|| BufferPool::new(m.message_pool_size));
    let kex = KexService::new(
        Arc::clone(&identity),
        p.enable_key_caching.then_some((p.key_cache_size, kex_ttl)),
        kex_ttl,
        key_pool,
        metrics.clone(),
    );
    let tls = crate::net::tls::server_config(&config.tls, &config.storage.data_dir)?
        .map(tokio_rustls::TlsAcceptor::from);
    let bind = config.server.bind_address;
    let api = TcpListener::bind((bind, config.server.api_port))
        .await
        .map_err(|e| io(&format!("api port {}", config.server.api_port), e))?;
    let ws = TcpListener::bind((bind, config.server.websocket_port))
        .await
        .map_err(|e| {
            io(
                &format!("websocket port {}", config.server.websocket_port),
                e,
            )
        })?;
    let api_addr = api.local_addr().map_err(|e| io("api port", e))?;
    let ws_addr = ws.local_addr().map_err(|e| io("websocket port", e))?;
    let sec = &config.security;
    let limiter = AddressLimiter::new(
        sec.rate_limit_per_address,
        sec.rate_limit_burst.max(sec.rate_limit_per_address),
        MAX_TRACKED_ADDRESSES,
        MonotonicClock::new(),
    );
    let claims = KeyedLimiter::new(
        sec.prekey_claims_per_second,
        sec.prekey_claim_burst,
        MAX_TRACKED_ADDRESSES,
        MonotonicClock::new(),
    );
    let profiler = crate::telemetry::profiling::start(
        config.debug.enable_profiling,
        Duration::from_secs(config.debug.profile_duration_seconds),
        config.debug.profile_dir.clone(),
    );
    let shared = Arc::new(Shared {
        ws_url: ws_url(&config, ws_addr),
        relay_id: identity.fingerprint(),
        config,
        storage,
        directory,
        hub,
        writer: Mutex::new(Some(writer_handle)),
        metrics,
        identity,
        kex,
        crypto,
        auth,
        limiter: Mutex::new(limiter),
        prekey_claims: Mutex::new(claims),
        clock: MonotonicClock::new(),
        shutdown: CancellationToken::new(),
        draining: AtomicBool::new(false),
        next_conn: AtomicU64::new(1),
        acceleration: CryptoAcceleration::detect(),
        buffers,
    });
    let sessions = TaskTracker::new();
    let background = TaskTracker::new();
    background.spawn(crate::net::ws_listener::serve(
        Arc::clone(&shared),
        ws,
        tls.clone(),
        sessions.clone(),
    ));
    background.spawn(crate::delivery::cleanup::run(Arc::clone(&shared)));
    background.spawn(crate::delivery::cleanup::checkpoints(Arc::clone(&shared)));
    let http_stop = CancellationToken::new();
    let http_tasks = TaskTracker::new();
    let http = tokio::spawn(crate::net::http_listener::serve(
        Arc::clone(&shared),
        api,
        tls,
        crate::net::http::router(Arc::clone(&shared)),
        http_stop.clone(),
        http_tasks.clone(),
    ));
    tracing::info!(
        api = %api_addr,
        websocket = %shared.ws_url,
        backend = shared.storage.backend(),
        relay_id = %shared.relay_id.to_hex(),
        "relay started"
    );
    Ok(RunningRelay {
        api_addr,
        ws_addr,
        shared,
        sessions,
        background,
        writer: writer_task,
        http,
        http_stop,
        http_tasks,
        fanout,
        profiler,
    })
}

impl RunningRelay {
    /// The shared state (tests and benchmarks inspect metrics and storage through it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The URL clients should use for the WebSocket.
    pub fn ws_url(&self) -> &str {
        &self.shared.ws_url
    }

    /// Drains and stops the relay, within [`DRAIN_TIMEOUT`] for sessions, then
    /// `WRITER_DRAIN_TIMEOUT` for the writers and `http_listener::DRAIN` for the API, whatever
    /// any client does: a stalled peer is dropped when its time is up.
    pub async fn shutdown(self) {
        let s = &self.shared;
        s.draining.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: draining connections");
        s.shutdown.cancel();
        self.sessions.close();
        self.background.close();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        if tokio::time::timeout_at(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.sessions.len(),
                "some connections did not close in time; dropping them"
            );
        }
        if tokio::time::timeout_at(deadline, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        // Dropping the last handle lets the writer commit its queue and stop (a session still
        // stuck may hold a clone; the timeout bounds that).
        drop(s.writer.lock().unwrap_or_else(|p| p.into_inner()).take());
        match tokio::time::timeout(WRITER_DRAIN_TIMEOUT, self.writer).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("the batch writer failed while draining"),
            Err(_) => tracing::error!("the batch writer did not finish in time"),
        }
        if let Some(f) = &self.fanout {
            f.stop();
        }
        if let Some(p) = &self.profiler {
            p.store(true, Ordering::Relaxed);
        }
        self.http_stop.cancel();
        let _ = self.http.await;
        self.http_tasks.close();
        let api_deadline = crate::net::http_listener::DRAIN + Duration::from_secs(1);
        if tokio::time::timeout(api_deadline, self.http_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some API connections did not close in time; dropping them");
        }
        tracing::info!("relay stopped");
    }
}
