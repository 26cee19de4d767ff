//! What every connection and request handler shares: configuration, storage, caches, the hub,
//! the writer, the crypto services and the shutdown signal.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nano_crypto::{CryptoAcceleration, Fingerprint, Identity, MonotonicClock};
use tokio_util::sync::CancellationToken;

use crate::config::ValidConfig;
use crate::crypto::auth_verifier::AuthVerifier;
use crate::crypto::kex::KexService;
use crate::crypto::pool::CryptoPool;
use crate::delivery::hub::Hub;
use crate::delivery::writer::WriterHandle;
use crate::directory::{Directory, UserEntry};
use crate::error::RelayError;
use crate::net::rate_limit::{AddressLimiter, KeyedLimiter};
use crate::storage::Storage;
use crate::telemetry::metrics::Metrics;

/// The relay's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub config: ValidConfig,
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// Users through the caches.
    pub directory: Arc<Directory>,
    /// Connected sessions.
    pub hub: Arc<Hub>,
    /// The batch writer (taken at shutdown so the writer can drain and stop).
    pub writer: Mutex<Option<WriterHandle>>,
    /// Metrics.
    pub metrics: Metrics,
    /// The relay's long-term identity.
    pub identity: Arc<Identity>,
    /// Its fingerprint: the relay id.
    pub relay_id: Fingerprint,
    /// Ephemeral keys.
    pub kex: KexService,
    /// CPU-heavy work.
    pub crypto: Arc<CryptoPool>,
    /// Batched auth checks.
    pub auth: AuthVerifier,
    /// Frame rate per address.
    pub limiter: Mutex<AddressLimiter<MonotonicClock>>,
    /// One-time prekey claims per requesting user id (`security.prekey_claims_per_second`).
    pub prekey_claims: Mutex<KeyedLimiter<i64, MonotonicClock>>,
    /// The clock of per-connection token buckets.
    pub clock: MonotonicClock,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Set while draining: `/ready` answers 503.
    pub draining: AtomicBool,
    /// Connection id source.
    pub next_conn: AtomicU64,
    /// The WebSocket URL clients should use.
    pub ws_url: String,
    /// Detected CPU features.
    pub acceleration: CryptoAcceleration,
    /// Reusable frame buffers (`[memory] enable_memory_pools`).
    pub buffers: Option<Arc<crate::pools::BufferPool>>,
}

impl Shared {
    /// The relay's `minimum_crypto_mode` applied to `mode`.
    ///
    /// # Errors
    /// `mode_not_allowed` below it.
    pub fn check_floor(&self, mode: nano_crypto::CryptoMode) -> Result<(), RelayError> {
        Ok(mode.at_least(self.config.security.minimum_crypto_mode)?)
    }

    /// A handle to the writer, unless the relay is shutting down.
    pub fn writer(&self) -> Option<WriterHandle> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a frame from `addr` is within the per-address rate.
    pub fn address_allows(&self, addr: IpAddr) -> bool {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(addr)
    }

    /// Whether user `requester` may claim one more one-time prekey now.
    pub fn claim_allowed(&self, requester: i64) -> bool {
        self.prekey_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow_key(requester)
    }

    /// Whether the relay is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Now, on the rate limiters' clock.
    pub fn clock_now(&self) -> std::time::Duration {
        use nano_crypto::Clock;
        self.clock.now()
    }

    /// A fresh connection id.
    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Looks `name` up: from L1 on the I/O worker when it is there, else through the lower
    /// levels in a blocking task. The entry's bundle is not decoded ([`UserEntry::bundle`]).
    pub async fn user(self: &Arc<Self>, name: &str) -> Result<Option<Arc<UserEntry>>, RelayError> {
        if let Some(e) = self.directory.cached(name) {
            return Ok(Some(e));
        }
        let name = name.to_owned();
        self.blocking(move |s| s.directory.lookup(&name)).await
    }

    /// `entry` with its bundle decoded ([`UserEntry::bundle`]), in a blocking task unless it
    /// was decoded already (as a lookup that missed L1 decoded it before: a storm of logins
    /// after a restart queues there rather than being refused by the bounded crypto pool). A
    /// bundle that does not decode is read once more from the database
    /// ([`crate::directory::Directory::reload`]): the damage may be in a cached copy only.
    ///
    /// # Errors
    /// [`RelayError::Corrupt`] for a stored bundle that does not verify;
    /// [`RelayError::NotFound`] if the user is gone by then; storage errors as they are.
    pub async fn decoded(
        self: &Arc<Self>,
        entry: Arc<UserEntry>,
    ) -> Result<Arc<UserEntry>, RelayError> {
        if entry.is_decoded() {
            return Ok(entry);
        }
        self.blocking(move |s| {
            if entry.bundle().is_ok() {
                return Ok(entry);
            }
            let again = s
                .directory
                .reload(&entry.record.username)?
                .ok_or(RelayError::NotFound)?;
            again.bundle()?;
            Ok(again)
        })
        .await
    }

    /// Runs blocking storage or cache work off the I/O workers. Work whose caller stopped
    /// waiting before it started (a timed-out request) is skipped, so a slow database does not
    /// pile up work nobody will read.
    pub async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> Result<R, RelayError> + Send + 'static,
    ) -> Result<R, RelayError> {
        let me = Arc::clone(self);
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(tokio::task::spawn_blocking(move || {
            if !tx.is_closed() {
                let _ = tx.send(f(&me));
            }
        }));
        rx.await
            .map_err(|_| RelayError::Internal("blocking task failed".into()))?
    }
}
