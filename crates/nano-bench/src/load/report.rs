//! The report of a load run: the summary table, JSON and Markdown (its charts: `chart.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

pub(crate) use super::stats::Second;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// The load a scenario phase offered: what its arriving users were scheduled to send.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Offered {
    pub(crate) phase: String,
    /// The phase's length (time-scaled), seconds.
    pub(crate) seconds: f64,
    /// Users who arrived to send messages.
    pub(crate) sender_users: u64,
    /// Users who arrived to do a key exchange (they send no message).
    pub(crate) key_exchange_users: u64,
    /// Messages those senders were scheduled to send (each sends its count, paced).
    pub(crate) messages: u64,
    /// `messages / seconds`.
    pub(crate) msgs_per_s: f64,
}

/// The relay's CPU during one phase of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseCpu {
    pub(crate) phase: String,
    /// Mean of the one-second samples within the phase, % of one core.
    pub(crate) cpu_percent_mean: f64,
    pub(crate) samples: usize,
}

/// The start of a phase of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseMark {
    pub(crate) phase: String,
    /// Seconds since the run's epoch.
    pub(crate) start_s: f64,
}

/// The relay's mean CPU per phase, from `marks` and the one-second samples; phases without a
/// sample are left out.
pub(crate) fn cpu_by_phase(samples: &[Sample], marks: &[PhaseMark]) -> Vec<PhaseCpu> {
    let mut out = Vec::new();
    for (i, m) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(f64::INFINITY, |n| n.start_s);
        // The first sample has no CPU figure yet (a rate needs two readings).
        let cpu: Vec<f64> = samples
            .iter()
            .skip(1)
            .filter(|s| s.t_s >= m.start_s && s.t_s < end)
            .map(|s| s.cpu_percent)
            .collect();
        if !cpu.is_empty() {
            out.push(PhaseCpu {
                phase: m.phase.clone(),
                cpu_percent_mean: cpu.iter().sum::<f64>() / cpu.len() as f64,
                samples: cpu.len(),
            });
        }
    }
    out
}

/// One relay sample.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    pub(crate) t_s: f64,
    pub(crate) rss_mb: f64,
    pub(crate) cpu_percent: f64,
    pub(crate) connections: u64,
}

/// Everything a run reports (the JSON of `--json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    pub(crate) crypto_mode: String,
    /// What messages travel as: "sessions" (the default) or "sealed envelopes" (`--sealed`).
    pub(crate) payloads: String,
    pub(crate) messages_sent: u64,
    pub(crate) messages_acked: u64,
    pub(crate) messages_received: u64,
    /// Whether receivers verified and decrypted each message (not with `--presealed`).
    pub(crate) opened: bool,
    /// Messages handed out twice to the application (must be 0).
    pub(crate) duplicates: u64,
    /// Messages the relay delivered again (at least once), not handed out again.
    pub(crate) redelivered: u64,
    pub(crate) lost: u64,
    pub(crate) key_exchanges: u64,
    /// With `--presealed`: receivers the relay closed as slow readers that logged in again.
    pub(crate) receiver_reconnects: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) throughput_msgs_per_s: f64,
    pub(crate) latency_ms: Latency,
    pub(crate) relay_rss_mb_max: f64,
    /// Mean over the whole run (warm-up, load and drain); see `relay_cpu_percent_by_phase`.
    pub(crate) relay_cpu_percent_mean: f64,
    pub(crate) relay_cpu_percent_by_phase: Vec<PhaseCpu>,
    /// The scenario's offered load per phase (empty for the other modes).
    pub(crate) offered: Vec<Offered>,
    /// The relay's `nano_messenger_active_connections` while holding (`--hold`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay_active_connections: Option<u64>,
    /// The relay's `nano_messenger_messages_acked_total` at the end: acks it applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay_acks_applied: Option<u64>,
    pub(crate) connections_max: u64,
    pub(crate) duration_s: f64,
    /// With `--hold`: relay RSS growth per 1,000 idle authenticated connections (MB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rss_mb_per_1000_connections: Option<f64>,
    /// With `--hold`: relay RSS (MB) settled before the connections were opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay_rss_mb_before: Option<f64>,
    /// With `--hold`: relay RSS (MB) settled while holding them (no new low for 5 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay_rss_mb_settled: Option<f64>,
    pub(crate) relay_samples: Vec<Sample>,
    /// Each phase's name and start (seconds since the run's epoch), in order.
    pub(crate) phases: Vec<PhaseMark>,
    /// Per second since the run's epoch: messages received, p50 and p99 latency.
    pub(crate) timeline: Vec<Second>,
}

impl Report {
    /// The summary table.
    pub(crate) fn table(&self) -> String {
        let mut s = String::new();
        let errors: u64 = self.errors.values().sum();
        let _ = writeln!(
            s,
            "| {} ({}, {}) | value |",
            self.scenario, self.crypto_mode, self.payloads
        );
        let _ = writeln!(s, "|---|---:|");
        let rows: Vec<(&str, String)> = vec![
            ("messages sent", self.messages_sent.to_string()),
            ("acknowledged (stored)", self.messages_acked.to_string()),
            (
                if self.opened {
                    "received, verified, decrypted"
                } else {
                    "received by raw receivers (not opened)"
                },
                self.messages_received.to_string(),
            ),
            ("handed out twice", self.duplicates.to_string()),
            (
                "redelivered by the relay (not handed out again)",
                self.redelivered.to_string(),
            ),
            ("lost (acknowledged, never received)", self.lost.to_string()),
            ("key exchanges completed", self.key_exchanges.to_string()),
            (
                "receiver reconnects (closed as slow readers)",
                self.receiver_reconnects.to_string(),
            ),
            ("errors", format!("{errors} {:?}", self.errors)),
            (
                "throughput (received msg/s)",
                format!("{:.0}", self.throughput_msgs_per_s),
            ),
            (
                "latency p50 / p95 / p99 / max (ms)",
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2}",
                    self.latency_ms.p50,
                    self.latency_ms.p95,
                    self.latency_ms.p99,
                    self.latency_ms.max
                ),
            ),
            (
                "relay RSS max (MB)",
                format!("{:.1}", self.relay_rss_mb_max),
            ),
            (
                "relay CPU mean (% of one core)",
                format!("{:.0}", self.relay_cpu_percent_mean),
            ),
            ("connections max", self.connections_max.to_string()),
            ("duration (s)", format!("{:.1}", self.duration_s)),
        ];
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        if let Some(m) = self.rss_mb_per_1000_connections {
            let _ = writeln!(s, "| relay RSS per 1,000 idle connections (MB) | {m:.1} |");
        }
        if let Some(m) = self.relay_rss_mb_settled {
            let _ = writeln!(s, "| relay RSS settled while holding (MB) | {m:.1} |");
        }
        if let Some(n) = self.relay_active_connections {
            let _ = writeln!(s, "| relay's active connections while holding | {n} |");
        }
        if let Some(n) = self.relay_acks_applied {
            let _ = writeln!(s, "| acks the relay applied | {n} |");
        }
        for o in &self.offered {
            let _ = writeln!(
                s,
                "| offered in {} ({} senders, {} key exchanges, {:.0} s) | {} msgs, {:.0} msg/s |",
                o.phase, o.sender_users, o.key_exchange_users, o.seconds, o.messages, o.msgs_per_s
            );
        }
        for c in &self.relay_cpu_percent_by_phase {
            let _ = writeln!(
                s,
                "| relay CPU in {} (% of one core, {} samples) | {:.0} |",
                c.phase, c.samples, c.cpu_percent_mean
            );
        }
        s
    }

    /// The Markdown report.
    pub(crate) fn markdown(&self, command: &str) -> String {
        let mut s = format!("# nano-bench load\n\nCommand: `{command}`\n\n");
        s.push_str(&self.table());
        s.push_str("\n## Relay over time\n\n| t (s) | RSS (MB) | CPU (%) | connections |\n|---:|---:|---:|---:|\n");
        for x in &self.relay_samples {
            let _ = writeln!(
                s,
                "| {:.0} | {:.1} | {:.0} | {} |",
                x.t_s, x.rss_mb, x.cpu_percent, x.connections
            );
        }
        s
    }
}
