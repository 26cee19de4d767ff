//! Prometheus metrics with the performance guide's names, plus the relay's own.
//!
//! One [`Metrics`] per relay, registered in its own registry (so tests running several relays in
//! one process never collide). Process memory and CPU are read from `/proc` when `/metrics` is
//! scraped, not on a timer.

use std::time::Duration;

use nano_crypto::CryptoMode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::error::RelayError;

/// Every metric the relay exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `nano_messenger_messages_processed_total{crypto_mode}`: messages durably stored.
    pub messages_processed: IntCounterVec,
    /// `nano_messenger_message_processing_duration_seconds{crypto_mode}`: frame received → `sent`.
    pub message_processing_duration: HistogramVec,
    /// `nano_messenger_active_connections`: open WebSocket connections.
    pub active_connections: IntGauge,
    /// `nano_messenger_crypto_operations_total{operation,crypto_mode}`.
    pub crypto_operations: IntCounterVec,
    /// `nano_messenger_crypto_operation_duration_seconds{operation,crypto_mode}`.
    pub crypto_operation_duration: HistogramVec,
    /// `nano_messenger_key_cache_hits_total`.
    pub key_cache_hits: IntCounter,
    /// `nano_messenger_key_cache_misses_total`.
    pub key_cache_misses: IntCounter,
    /// `nano_messenger_memory_usage_bytes`: resident set size.
    pub memory_usage: IntGauge,
    /// `nano_messenger_cpu_usage_seconds_total`: user + system CPU time of the process.
    pub cpu_usage: prometheus::Gauge,
    /// `nano_messenger_batch_size`: messages per committed batch.
    pub batch_size: Histogram,
    /// `nano_messenger_batch_commit_duration_seconds`.
    pub batch_commit_duration: Histogram,
    /// `nano_messenger_write_queue_depth`: messages waiting for the batch writer.
    pub write_queue_depth: IntGauge,
    /// `nano_messenger_errors_total{code}`: errors sent to peers, by wire code.
    pub errors: IntCounterVec,
    /// `nano_messenger_locked_memory_bytes`: secret memory locked by the secure allocator.
    pub locked_memory: IntGauge,
    /// `nano_messenger_messages_delivered_total`: messages pushed or streamed to recipients.
    pub messages_delivered: IntCounter,
    /// `nano_messenger_messages_acked_total`: acks applied (inbox rows erased to tombstones).
    pub messages_acked: IntCounter,
    /// `nano_messenger_connections_refused_total{reason}`.
    pub connections_refused: IntCounterVec,
    /// `nano_messenger_l1_cache_hits_total` / `_misses_total`.
    pub l1_hits: IntCounter,
    /// L1 misses.
    pub l1_misses: IntCounter,
    /// `nano_messenger_l2_cache_hits_total` / `_misses_total`.
    pub l2_hits: IntCounter,
    /// L2 misses.
    pub l2_misses: IntCounter,
    /// `nano_messenger_cleanup_deleted_total`: rows removed by the cleanup timer.
    pub cleanup_deleted: IntCounter,
    /// `nano_messenger_prekey_bundles_total{prekey}`: bundles handed out by `get_prekeys`,
    /// `one_time` (with a claimed one-time prekey) or `last_resort` (none left, or the
    /// requester over its claim rate).
    pub prekey_bundles: IntCounterVec,
    /// `[debug] detailed_metrics`: record crypto duration histograms.
    detailed: bool,
    /// `[debug] log_crypto_operations`: log each crypto operation.
    log_crypto: bool,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    m: prometheus::Result<T>,
) -> Result<T, RelayError> {
    let m = m.map_err(|e| RelayError::Internal(format!("metric: {e}")))?;
    r.register(Box::new(m.clone()))
        .map_err(|e| RelayError::Internal(format!("metric: {e}")))?;
    Ok(m)
}

/// Latency buckets from 100 µs to 10 s.
/// The `operation` labels of `nano_messenger_crypto_operations_total`.
pub const CRYPTO_OPERATIONS: [&str; 4] = ["verify", "sign", "kem_keygen", "kem_decapsulate"];

/// The `reason` labels of `nano_messenger_connections_refused_total`.
pub const REFUSAL_REASONS: [&str; 3] = ["max_connections", "slow_reader", "rate_limited"];

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric; `detailed` adds crypto duration histograms,
    /// `log_crypto` logs each crypto operation (kind, mode, duration) at debug level.
    pub fn new(detailed: bool, log_crypto: bool) -> Result<Self, RelayError> {
        let r = Registry::new();
        let hist = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        Ok(Self {
            messages_processed: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "nano_messenger_messages_processed_total",
                        "Total number of messages processed",
                    ),
                    &["crypto_mode"],
                ),
            )?,
            message_processing_duration: reg(
                &r,
                HistogramVec::new(
                    hist(
                        "nano_messenger_message_processing_duration_seconds",
                        "Time spent processing messages",
                    ),
                    &["crypto_mode"],
                ),
            )?,
            active_connections: reg(
                &r,
                IntGauge::new(
                    "nano_messenger_active_connections",
                    "Number of active connections",
                ),
            )?,
            crypto_operations: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "nano_messenger_crypto_operations_total",
                        "Crypto operations performed by the relay",
                    ),
                    &["operation", "crypto_mode"],
                ),
            )?,
            crypto_operation_duration: reg(
                &r,
                HistogramVec::new(
                    hist(
                        "nano_messenger_crypto_operation_duration_seconds",
                        "Time spent in crypto operations",
                    ),
                    &["operation", "crypto_mode"],
                ),
            )?,
            key_cache_hits: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_key_cache_hits_total",
                    "Ephemeral key cache hits",
                ),
            )?,
            key_cache_misses: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_key_cache_misses_total",
                    "Ephemeral key cache misses",
                ),
            )?,
            memory_usage: reg(
                &r,
                IntGauge::new(
                    "nano_messenger_memory_usage_bytes",
                    "Resident set size of the relay process",
                ),
            )?,
            cpu_usage: reg(
                &r,
                prometheus::Gauge::new(
                    "nano_messenger_cpu_usage_seconds_total",
                    "CPU time (user + system) used by the relay process",
                ),
            )?,
            batch_size: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "nano_messenger_batch_size",
                        "Messages committed per storage transaction",
                    )
                    .buckets(vec![
                        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                    ]),
                ),
            )?,
            batch_commit_duration: reg(
                &r,
                Histogram::with_opts(hist(
                    "nano_messenger_batch_commit_duration_seconds",
                    "Time to commit one batch",
                )),
            )?,
            write_queue_depth: reg(
                &r,
                IntGauge::new(
                    "nano_messenger_write_queue_depth",
                    "Messages waiting for the batch writer",
                ),
            )?,
            prekey_bundles: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "nano_messenger_prekey_bundles_total",
                        "Prekey bundles handed out, by the prekey that answers",
                    ),
                    &["prekey"],
                ),
            )?,
            errors: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("nano_messenger_errors_total", "Errors sent to peers"),
                    &["code"],
                ),
            )?,
            locked_memory: reg(
                &r,
                IntGauge::new(
                    "nano_messenger_locked_memory_bytes",
                    "Secret key memory locked by the secure allocator",
                ),
            )?,
            messages_delivered: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_messages_delivered_total",
                    "Messages pushed or streamed to recipients",
                ),
            )?,
            messages_acked: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_messages_acked_total",
                    "Acks applied: inbox rows erased to tombstones",
                ),
            )?,
            connections_refused: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "nano_messenger_connections_refused_total",
                        "Connections refused",
                    ),
                    &["reason"],
                ),
            )?,
            l1_hits: reg(
                &r,
                IntCounter::new("nano_messenger_l1_cache_hits_total", "User bundle L1 hits"),
            )?,
            l1_misses: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_l1_cache_misses_total",
                    "User bundle L1 misses",
                ),
            )?,
            l2_hits: reg(
                &r,
                IntCounter::new("nano_messenger_l2_cache_hits_total", "User bundle L2 hits"),
            )?,
            l2_misses: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_l2_cache_misses_total",
                    "User bundle L2 misses",
                ),
            )?,
            cleanup_deleted: reg(
                &r,
                IntCounter::new(
                    "nano_messenger_cleanup_deleted_total",
                    "Acked or expired messages deleted",
                ),
            )?,
            registry: r,
            detailed,
            log_crypto,
        }
        .started())
    }

    fn started(self) -> Self {
        self.start_known_series();
        self
    }

    /// Starts every series whose labels are known in advance at zero, so dashboards and alerts
    /// see them on a fresh relay, before the first message, error or refusal.
    fn start_known_series(&self) {
        for mode in CryptoMode::ALL {
            let m = mode.as_str();
            self.messages_processed.with_label_values(&[m]);
            self.message_processing_duration.with_label_values(&[m]);
            for op in CRYPTO_OPERATIONS {
                self.crypto_operations.with_label_values(&[op, m]);
                if self.detailed {
                    self.crypto_operation_duration.with_label_values(&[op, m]);
                }
            }
        }
        for code in nano_proto::ErrorCode::ALL {
            self.errors.with_label_values(&[code.as_str()]);
        }
        for reason in REFUSAL_REASONS {
            self.connections_refused.with_label_values(&[reason]);
        }
        for kind in ["one_time", "last_resort"] {
            self.prekey_bundles.with_label_values(&[kind]);
        }
    }

    /// Counts a prekey bundle handed out, with a one-time prekey or without.
    pub fn prekey_claim(&self, one_time: bool) {
        let kind = if one_time { "one_time" } else { "last_resort" };
        self.prekey_bundles.with_label_values(&[kind]).inc();
    }

    /// Records one durably stored message.
    pub fn message_processed(&self, mode: CryptoMode, took: Duration) {
        let m = mode.as_str();
        self.messages_processed.with_label_values(&[m]).inc();
        self.message_processing_duration
            .with_label_values(&[m])
            .observe(took.as_secs_f64());
    }

    /// Records one crypto operation.
    pub fn crypto_op(&self, op: &str, mode: CryptoMode, took: Duration) {
        let labels = [op, mode.as_str()];
        self.crypto_operations.with_label_values(&labels).inc();
        if self.detailed {
            self.crypto_operation_duration
                .with_label_values(&labels)
                .observe(took.as_secs_f64());
        }
        if self.log_crypto {
            tracing::debug!(
                operation = op,
                mode = mode.as_str(),
                micros = took.as_micros() as u64,
                "crypto operation"
            );
        }
    }

    /// Counts an error sent to a peer.
    pub fn error(&self, code: nano_proto::ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// The Prometheus text exposition, with process figures refreshed.
    pub fn render(&self) -> String {
        if let Some((rss, cpu)) = process_usage() {
            self.memory_usage
                .set(i64::try_from(rss).unwrap_or(i64::MAX));
            self.cpu_usage.set(cpu);
        }
        let locked = nano_crypto::SecureAllocator::global().stats().locked_bytes;
        self.locked_memory
            .set(i64::try_from(locked).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Resident set size in bytes and CPU seconds of this process, from `/proc/self`.
pub fn process_usage() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of 1/100 s on every supported architecture (USER_HZ).
    Some((rss_pages * 4096, (utime + stime) / 100.0))
}
