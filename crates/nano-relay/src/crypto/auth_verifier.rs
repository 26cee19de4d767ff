//! Authentication signature checks, batched: concurrent `auth` frames are verified together
//! through [`BatchVerifier`] on the crypto pool (one Ed25519 batch equation for the classical
//! parts, ML-DSA spread over the pool's threads).
//!
//! A collector takes every check queued at the moment (up to [`MAX_BATCH`]) and ships the batch to
//! the pool; it never waits for a batch to fill, so a lone login is not delayed.

use std::sync::Arc;
use std::time::Duration;

use nano_crypto::{BatchVerifier, VerificationTask};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::pool::CryptoPool;
use crate::error::RelayError;

/// Most signatures per batch.
pub(crate) const MAX_BATCH: usize = 64;
/// Checks that may wait for the collector.
const QUEUE: usize = 1024;

type Job = (VerificationTask, oneshot::Sender<bool>);

/// Handle for submitting checks.
#[derive(Debug, Clone)]
pub struct AuthVerifier {
    tx: mpsc::Sender<Job>,
}

impl AuthVerifier {
    /// Starts the collector on the current runtime.
    pub fn spawn(pool: Arc<CryptoPool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(collect(rx, pool));
        Self { tx }
    }

    /// Whether `task`'s signature is valid.
    pub async fn verify(&self, task: VerificationTask) -> Result<bool, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .try_send((task, tx))
            .map_err(|_| RelayError::Unavailable)?;
        rx.await.map_err(|_| RelayError::Unavailable)
    }
}

async fn collect(mut rx: mpsc::Receiver<Job>, pool: Arc<CryptoPool>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let pool = Arc::clone(&pool);
        tokio::spawn(async move {
            // Ids are positions in this batch; the caller's id is not trusted to be unique.
            let (tasks, mut replies): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .enumerate()
                .map(|(i, (task, reply))| (task.with_id(i as u64), Some(reply)))
                .unzip();
            let n = tasks.len();
            let results = pool
                .run(move || {
                    let mut v = BatchVerifier::new(n, Duration::ZERO);
                    let mut out = Vec::new();
                    for t in tasks {
                        if let Some(r) = v.push(t) {
                            out.extend(r);
                        }
                    }
                    out.extend(v.flush());
                    out
                })
                .await;
            match results {
                Ok(results) => {
                    for r in results {
                        let slot = usize::try_from(r.id).ok().and_then(|i| replies.get_mut(i));
                        if let Some(reply) = slot.and_then(Option::take) {
                            let _ = reply.send(r.outcome.is_ok());
                        }
                    }
                }
                // Dropping the replies makes each waiter fail with `unavailable`.
                Err(e) => tracing::warn!(error = %e, "auth batch not verified"),
            }
        });
    }
}
