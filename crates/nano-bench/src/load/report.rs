//! The report of a load run: the summary table, JSON, Markdown and an SVG chart of throughput
//! and latency over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

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

/// The relay's mean CPU per phase, from `marks` (each phase's name and start, seconds) and
/// the one-second samples; phases without a sample are left out.
pub(crate) fn cpu_by_phase(samples: &[Sample], marks: &[(String, f64)]) -> Vec<PhaseCpu> {
    let mut out = Vec::new();
    for (i, (name, start)) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(f64::INFINITY, |(_, t)| *t);
        // The first sample has no CPU figure yet (a rate needs two readings).
        let cpu: Vec<f64> = samples
            .iter()
            .skip(1)
            .filter(|s| s.t_s >= *start && s.t_s < end)
            .map(|s| s.cpu_percent)
            .collect();
        if !cpu.is_empty() {
            out.push(PhaseCpu {
                phase: name.clone(),
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
    /// Per second: (second, messages received, p50 latency ms).
    pub(crate) timeline: Vec<(u32, u64, f64)>,
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

    /// An SVG chart: received messages per second (bars) and p50 latency (line).
    pub(crate) fn svg(&self) -> String {
        let (w, h, pad) = (800.0_f64, 300.0_f64, 40.0_f64);
        // Bars sit at their second, so a second with no receipts shows as a gap.
        let first = self.timeline.first().map_or(0, |t| t.0);
        let last = self.timeline.last().map_or(0, |t| t.0);
        let n = f64::from(last - first + 1);
        let max_tp = self.timeline.iter().map(|t| t.1).max().unwrap_or(1).max(1) as f64;
        let max_lat = self.timeline.iter().map(|t| t.2).fold(0.001_f64, f64::max);
        let bw = (w - 2.0 * pad) / n;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        let _ = writeln!(
            s,
            "<text x=\"{pad}\" y=\"16\">received msg/s (bars, max {max_tp:.0}) and p50 latency ms (line, max {max_lat:.2}) — {} {}</text>",
            self.scenario, self.crypto_mode
        );
        let mut line = String::new();
        for (sec, tp, lat) in &self.timeline {
            let x = pad + f64::from(sec - first) * bw;
            let bh = (*tp as f64 / max_tp) * (h - 2.0 * pad);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#7aa6d8\"/>",
                h - pad - bh,
                (bw - 1.0).max(0.5)
            );
            let y = h - pad - (lat / max_lat) * (h - 2.0 * pad);
            let _ = write!(line, "{:.1},{y:.1} ", x + bw / 2.0);
        }
        let _ = writeln!(
            s,
            "<polyline points=\"{line}\" fill=\"none\" stroke=\"#d8572a\" stroke-width=\"2\"/>"
        );
        let _ = writeln!(
            s,
            "<line x1=\"{pad}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"black\"/>",
            h - pad,
            w - pad,
            h - pad
        );
        let _ = writeln!(
            s,
            "<text x=\"{pad}\" y=\"{:.0}\">0 s</text><text x=\"{:.0}\" y=\"{:.0}\">{n:.0} s</text>",
            h - pad + 14.0,
            w - pad - 20.0,
            h - pad + 14.0
        );
        s.push_str("</svg>\n");
        s
    }
}
