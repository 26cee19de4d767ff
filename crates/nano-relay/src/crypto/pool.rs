//! The bounded crypto pool: the pipeline's second stage. Signature checks, key generation and
//! decapsulation run on their own threads, never on the async I/O workers.
//!
//! At most `queue` jobs are queued or running; beyond that a request is refused with
//! `unavailable` rather than queued without bound.

use std::sync::Arc;

use tokio::sync::{Semaphore, oneshot};

use crate::error::RelayError;

/// A fixed-size thread pool with a bounded queue.
pub struct CryptoPool {
    pool: rayon::ThreadPool,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for CryptoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoPool")
            .field("threads", &self.pool.current_num_threads())
            .field("free_slots", &self.permits.available_permits())
            .finish()
    }
}

impl CryptoPool {
    /// A pool of `threads` threads (0 = one per core) admitting `queue` jobs at a time.
    pub fn new(threads: usize, queue: usize) -> Result<Self, RelayError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("nano-crypto-{i}"))
            .panic_handler(|_| tracing::error!("a crypto job panicked"))
            .build()
            .map_err(|e| RelayError::Internal(format!("crypto pool: {e}")))?;
        Ok(Self {
            pool,
            permits: Arc::new(Semaphore::new(queue.max(1))),
        })
    }

    /// Starts `f` on the pool without waiting (background refills); skipped when the pool is
    /// saturated, which the caller retries on its next use.
    pub fn spawn_detached(&self, f: impl FnOnce() + Send + 'static) -> bool {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return false;
        };
        self.pool.spawn(move || {
            let _permit = permit;
            f();
        });
        true
    }

    /// Runs `f` on the pool and waits for its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, RelayError> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| RelayError::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            let _permit = permit;
            let _ = tx.send(f());
        });
        rx.await
            .map_err(|_| RelayError::Internal("crypto job failed".into()))
    }
}
