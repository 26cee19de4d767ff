//! What a load run counts: sends, acknowledgements, receipts with their end-to-end latency,
//! errors by code, and loss (acknowledged sends never received).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters shared by every task of a run.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    seq: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Messages handed out twice to the application (a fault of the client SDK's dedup).
    pub(crate) duplicates: AtomicU64,
    /// Messages the relay delivered again (at least once: before an ack was applied, or after
    /// a reconnect): seen by the SDK and not handed out, or seen twice by a raw receiver.
    pub(crate) redelivered: AtomicU64,
    pub(crate) key_exchanges: AtomicU64,
    /// Raw receivers that the relay closed (slow readers) and that logged in again.
    pub(crate) reconnects: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    acked_seqs: Mutex<HashSet<u64>>,
    received_seqs: Mutex<HashSet<u64>>,
    /// (milliseconds since the run started, latency in microseconds) per receipt.
    receipts: Mutex<Vec<(u32, u32)>>,
    /// Receipts before this (milliseconds since the run started) are left out of the latency
    /// percentiles: a warm-up's.
    timed_from_ms: std::sync::atomic::AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stats {
    /// The plaintext of the next message: its sequence number and send instant.
    pub(crate) fn next_message(&self, epoch: Instant) -> (u64, String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let nanos = epoch.elapsed().as_nanos();
        (seq, format!("Load test message {seq} {nanos}"))
    }

    /// A send the relay acknowledged as stored.
    pub(crate) fn acked(&self, seq: u64) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        lock(&self.acked_seqs).insert(seq);
    }

    /// A decrypted, verified receipt.
    pub(crate) fn received(&self, plaintext: &[u8], epoch: Instant) {
        let now = epoch.elapsed();
        let text = String::from_utf8_lossy(plaintext);
        let mut it = text.rsplit(' ');
        let (Some(nanos), Some(seq)) = (
            it.next().and_then(|n| n.parse::<u128>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            self.error("unparsable_plaintext");
            return;
        };
        if !lock(&self.received_seqs).insert(seq) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let latency_us = now.as_nanos().saturating_sub(nanos) / 1000;
        lock(&self.receipts).push((
            u32::try_from(now.as_millis()).unwrap_or(u32::MAX),
            u32::try_from(latency_us).unwrap_or(u32::MAX),
        ));
    }

    /// A receipt by a raw receiver (`--presealed`): sequence number and write instant known.
    pub(crate) fn received_raw(&self, seq: u64, sent: Instant, epoch: Instant) {
        if !lock(&self.received_seqs).insert(seq) {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        lock(&self.receipts).push((
            u32::try_from(epoch.elapsed().as_millis()).unwrap_or(u32::MAX),
            u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX),
        ));
    }

    /// A message the receiver could not verify or decrypt.
    pub(crate) fn rejected(&self) {
        self.error("rejected");
    }

    /// Counts an error by code.
    pub(crate) fn error(&self, code: &str) {
        *lock(&self.errors).entry(code.to_owned()).or_default() += 1;
    }

    /// The error counts, to add to.
    pub(crate) fn errors_mut(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        lock(&self.errors)
    }

    /// Errors by code.
    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Acknowledged sends never received.
    pub(crate) fn lost(&self) -> u64 {
        let acked = lock(&self.acked_seqs);
        let got = lock(&self.received_seqs);
        acked.iter().filter(|s| !got.contains(s)).count() as u64
    }

    /// From now on receipts count in the latency percentiles; earlier ones (a warm-up's) do
    /// not. Returns the messages received so far.
    pub(crate) fn start_timing(&self, epoch: Instant) -> u64 {
        let now = u32::try_from(epoch.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.timed_from_ms.store(now, Ordering::Relaxed);
        self.received.load(Ordering::Relaxed)
    }

    /// Latency percentiles in milliseconds, over the receipts since [`Stats::start_timing`]:
    /// p50, p95, p99, max.
    pub(crate) fn latency_ms(&self) -> [f64; 4] {
        let from = self.timed_from_ms.load(Ordering::Relaxed);
        let mut l: Vec<u32> = lock(&self.receipts)
            .iter()
            .filter(|r| r.0 >= from)
            .map(|r| r.1)
            .collect();
        if l.is_empty() {
            return [0.0; 4];
        }
        l.sort_unstable();
        [
            percentile_ms(&l, 0.50),
            percentile_ms(&l, 0.95),
            percentile_ms(&l, 0.99),
            percentile_ms(&l, 1.0),
        ]
    }

    /// Per second since the epoch: messages received and their p50 and p99 latency.
    pub(crate) fn timeline(&self) -> Vec<Second> {
        let r = lock(&self.receipts);
        let mut by_sec: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (t, l) in r.iter() {
            by_sec.entry(t / 1000).or_default().push(*l);
        }
        by_sec
            .into_iter()
            .map(|(s, mut v)| {
                v.sort_unstable();
                Second {
                    t_s: s,
                    received: v.len() as u64,
                    p50_ms: percentile_ms(&v, 0.50),
                    p99_ms: percentile_ms(&v, 0.99),
                }
            })
            .collect()
    }
}

/// The `q` quantile (nearest rank) of non-empty, sorted latencies in µs, in ms.
fn percentile_ms(sorted: &[u32], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// One second of a run's receipts.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Second {
    /// Seconds since the run's epoch (the second's start).
    pub(crate) t_s: u32,
    /// Messages received within the second.
    pub(crate) received: u64,
    /// Latency (send to receipt) of those messages, ms.
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}
