//! Batch signature verification.
//!
//! Tasks queue until `batch_size` is reached or the oldest has waited `batch_timeout`. A flush
//! checks every Ed25519 signature (classical, and the Ed25519 half of hybrid) in one cofactored
//! batch equation (ed25519-zebra, which agrees exactly with single verification), and every
//! ML-DSA signature spread across cores, both at the same time. If the batch
//! equation fails, each Ed25519 item is re-checked on its own, so one bad signature never rejects
//! the good ones. A hybrid task passes only if both of its halves pass.

use std::time::Duration;

use rand::SeedableRng;
use rand_core::RngCore;
use rayon::prelude::*;

use crate::error::{CryptoError, Result};
use crate::key_cache::{Clock, MonotonicClock};
use crate::primitives::ed25519::{self, Ed25519PublicKey};
use crate::sign::{self, MLDSA_CONTEXT, SigContext, Signature, VerifyingKey};

/// One signature to check, tagged with a caller-chosen id.
#[derive(Debug, Clone)]
pub struct VerificationTask {
    id: u64,
    key: VerifyingKey,
    tbs: Vec<u8>,
    sig: Vec<u8>,
}

/// The outcome for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationResult {
    /// The task's id.
    pub id: u64,
    /// `Ok` if the signature is valid.
    pub outcome: Result<()>,
}

impl VerificationTask {
    /// A task checking `sig` by `key` over `content` for `ctx`. Fails at once on a mode mismatch.
    pub fn new(
        id: u64,
        key: &VerifyingKey,
        ctx: SigContext,
        content: &[u8],
        sig: &Signature,
    ) -> Result<Self> {
        crate::kem::expect_mode(key.mode(), sig.mode())?;
        Ok(Self {
            id,
            key: key.clone(),
            tbs: sign::to_be_signed(key.mode(), ctx, content),
            sig: sig.as_bytes().to_vec(),
        })
    }

    /// The caller's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The same check under another id (a batcher renumbering tasks from many callers).
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    /// The Ed25519 part, if any: key and signature bytes.
    fn ed25519_part(&self) -> Option<(&Ed25519PublicKey, &[u8])> {
        match &self.key {
            VerifyingKey::Classical(k) => Some((k, &self.sig)),
            VerifyingKey::Hybrid(_, k) => sign::split_hybrid(&self.sig).ok().map(|(_, e)| (k, e)),
            VerifyingKey::Quantum(_) => None,
        }
    }

    /// Checks the ML-DSA part, if any (`Ok` when there is none).
    fn verify_mldsa_part(&self) -> Result<()> {
        match &self.key {
            VerifyingKey::Classical(_) => Ok(()),
            VerifyingKey::Hybrid(m, _) => {
                let (ms, _) = sign::split_hybrid(&self.sig)?;
                m.verify(&self.tbs, MLDSA_CONTEXT, ms)
            }
            VerifyingKey::Quantum(k) => k.verify(&self.tbs, MLDSA_CONTEXT, &self.sig),
        }
    }
}

/// Verifies `tasks` at once; results are in input order.
pub fn verify_all(tasks: &[VerificationTask]) -> Vec<VerificationResult> {
    let (ed, ml) = rayon::join(
        || verify_ed25519(tasks),
        || {
            tasks
                .par_iter()
                .map(VerificationTask::verify_mldsa_part)
                .collect::<Vec<_>>()
        },
    );
    tasks
        .iter()
        .zip(ed.into_iter().zip(ml))
        .map(|(t, (e, m))| VerificationResult {
            id: t.id,
            outcome: e.and(m),
        })
        .collect()
}

/// The Ed25519 outcome for each task (`Ok` for tasks with no Ed25519 part).
fn verify_ed25519(tasks: &[VerificationTask]) -> Vec<Result<()>> {
    let mut out: Vec<Result<()>> = vec![Ok(()); tasks.len()];
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut queued = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let Some((key, sig)) = t.ed25519_part() else {
            if matches!(t.key, VerifyingKey::Hybrid(..)) {
                out[i] = Err(CryptoError::BadSignature);
            }
            continue;
        };
        match ed25519::parse_signature(sig) {
            Ok(s) => {
                let item = ed25519_zebra::batch::Item::from((
                    ed25519_zebra::VerificationKeyBytes::from(*key.as_bytes()),
                    s,
                    &t.tbs,
                ));
                batch.queue(item.clone());
                queued.push((i, item));
            }
            Err(e) => out[i] = Err(e),
        }
    }
    if queued.is_empty() {
        return out;
    }
    // The batch's random coefficients must be unpredictable to signers: seed them from the OS.
    // Without OS randomness, check each item on its own instead.
    let mut seed = [0u8; 32];
    let batch_ok = rand_core::OsRng.try_fill_bytes(&mut seed).is_ok()
        && batch.verify(rand::rngs::StdRng::from_seed(seed)).is_ok();
    if !batch_ok {
        for (i, item) in queued {
            if item.verify_single().is_err() {
                out[i] = Err(CryptoError::BadSignature);
            }
        }
    }
    out
}

/// Queues verification tasks and flushes them by size or age.
#[derive(Debug)]
pub struct BatchVerifier<C: Clock = MonotonicClock> {
    pending: Vec<VerificationTask>,
    batch_size: usize,
    batch_timeout: Duration,
    oldest: Option<Duration>,
    clock: C,
}

impl BatchVerifier<MonotonicClock> {
    /// A verifier flushing at `batch_size` tasks (at least 1) or `batch_timeout` of waiting.
    pub fn new(batch_size: usize, batch_timeout: Duration) -> Self {
        Self::with_clock(batch_size, batch_timeout, MonotonicClock::new())
    }
}

impl<C: Clock> BatchVerifier<C> {
    /// As [`BatchVerifier::new`] with an explicit clock.
    pub fn with_clock(batch_size: usize, batch_timeout: Duration, clock: C) -> Self {
        let batch_size = batch_size.max(1);
        Self {
            pending: Vec::with_capacity(batch_size),
            batch_size,
            batch_timeout,
            oldest: None,
            clock,
        }
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `task`; returns the batch's results if this filled it.
    pub fn push(&mut self, task: VerificationTask) -> Option<Vec<VerificationResult>> {
        if self.pending.is_empty() {
            self.oldest = Some(self.clock.now());
        }
        self.pending.push(task);
        (self.pending.len() >= self.batch_size).then(|| self.flush())
    }

    /// How long until the oldest queued task times out (`None` when empty).
    pub fn time_to_deadline(&self) -> Option<Duration> {
        let oldest = self.oldest?;
        let waited = self.clock.now().saturating_sub(oldest);
        Some(self.batch_timeout.saturating_sub(waited))
    }

    /// Flushes if the oldest task has waited `batch_timeout`.
    pub fn poll(&mut self) -> Option<Vec<VerificationResult>> {
        (self.time_to_deadline()? == Duration::ZERO).then(|| self.flush())
    }

    /// Verifies everything queued now.
    pub fn flush(&mut self) -> Vec<VerificationResult> {
        self.oldest = None;
        let tasks = std::mem::take(&mut self.pending);
        self.pending.reserve(self.batch_size);
        verify_all(&tasks)
    }
}
