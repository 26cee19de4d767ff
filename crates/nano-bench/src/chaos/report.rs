//! The report of a chaos run: the summary table, Markdown (with one row per fault) and the
//! JSON of `--json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::chaos::faults::FaultRecord;
use crate::chaos::traffic::Counts;

/// Everything a run reports. Times in seconds, rates in messages per second.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChaosReport {
    /// `relay-kill`, `postgres-restart` or `redis-restart`.
    pub(crate) scenario: String,
    /// `sqlite` or `postgresql host:port/db`.
    pub(crate) storage: String,
    /// What each fault does.
    pub(crate) fault: String,
    /// The mode every message is sealed with.
    pub(crate) crypto_mode: String,
    /// Registered receiving users, and sending clients.
    pub(crate) users: usize,
    pub(crate) senders: usize,
    /// Faults injected (and asked for).
    pub(crate) faults: usize,
    pub(crate) faults_requested: usize,
    /// The offered rate asked for, and the one achieved over the load.
    pub(crate) offered_rate_msgs_per_s: f64,
    pub(crate) offered_msgs_per_s_measured: f64,
    /// Length of the load (faults included), and of the whole run until the books closed.
    pub(crate) load_s: f64,
    pub(crate) duration_s: f64,
    #[serde(flatten)]
    pub(crate) counts: Counts,
    /// The longest recovery (see `recovery`); `None` if a fault did not recover.
    pub(crate) recovery_s_max: Option<f64>,
    /// What recovery means in this scenario.
    pub(crate) recovery: String,
    /// One record per fault.
    pub(crate) fault_records: Vec<FaultRecord>,
    /// Checks that failed (empty: the run passed).
    pub(crate) failures: Vec<String>,
    /// Things worth knowing that are not failures of the system under test.
    pub(crate) warnings: Vec<String>,
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |s| format!("{s:.2}"))
}

impl ChaosReport {
    /// The summary table.
    pub(crate) fn table(&self) -> String {
        let c = &self.counts;
        let rows: Vec<(&str, String)> = vec![
            ("storage", self.storage.clone()),
            ("fault", self.fault.clone()),
            (
                "faults injected",
                format!("{} of {}", self.faults, self.faults_requested),
            ),
            (
                "offered rate (msg/s): asked / achieved",
                format!(
                    "{:.0} / {:.1}",
                    self.offered_rate_msgs_per_s, self.offered_msgs_per_s_measured
                ),
            ),
            ("messages sent", c.messages_sent.to_string()),
            ("acknowledged (`sent`)", c.messages_acked.to_string()),
            ("delivered (distinct)", c.messages_delivered.to_string()),
            ("lost (acknowledged, never delivered)", c.lost.to_string()),
            ("duplicates shown", c.duplicates_shown.to_string()),
            (
                "sends failed",
                format!("{} {:?}", c.sends_failed, c.send_errors),
            ),
            (
                "delivered though not acknowledged",
                c.delivered_unacked.to_string(),
            ),
            (
                "misrouted / rejected / unparsable",
                format!("{} / {} / {}", c.misrouted, c.rejected, c.unparsable),
            ),
            ("sends late (> 1 s)", c.sends_late.to_string()),
            ("longest send (s)", format!("{:.2}", c.send_s_max)),
            (
                "send to delivery p50 / p99 / max (s)",
                format!(
                    "{:.3} / {:.3} / {:.3}",
                    c.delivery_s_p50, c.delivery_s_p99, c.delivery_s_max
                ),
            ),
            (
                "sends not offered (in-flight cap)",
                c.sends_not_offered.to_string(),
            ),
            ("recovery max (s)", opt_s(self.recovery_s_max)),
            (
                "load / run (s)",
                format!("{:.1} / {:.1}", self.load_s, self.duration_s),
            ),
        ];
        let mut s = format!(
            "| {} ({}, {} users) | value |\n|---|---:|\n",
            self.scenario, self.crypto_mode, self.users
        );
        for (k, v) in rows {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let verdict = if self.failures.is_empty() {
            "passed".to_owned()
        } else {
            format!("FAILED: {}", self.failures.join("; "))
        };
        let _ = writeln!(s, "| result | {verdict} |");
        s
    }

    /// The per-fault table.
    fn fault_table(&self) -> String {
        let mut s = String::from(
            "| fault | at (s) | back after (s) | /ready 200 after (s) | /ready down seen | first delivery of a later send after (s) | recovery (s) | detail |\n|---:|---:|---:|---:|---|---:|---:|---|\n",
        );
        for f in &self.fault_records {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.2} | {} | {} | {} | {} | {} |",
                f.n,
                f.at_s,
                f.back_after_s,
                opt_s(f.ready_after_s),
                f.ready_down_seen,
                opt_s(f.delivery_after_s),
                opt_s(f.recovery_s),
                f.detail
            );
        }
        s
    }

    /// The Markdown report.
    pub(crate) fn markdown(&self, command: &str) -> String {
        let mut s = format!("# nano-bench chaos\n\nCommand: `{command}`\n\n");
        s.push_str(&self.table());
        let _ = write!(
            s,
            "\nRecovery: {}.\n\n## Faults\n\n{}",
            self.recovery,
            self.fault_table()
        );
        if !self.counts.send_error_samples.is_empty() {
            s.push_str("\n## Send errors\n\n");
            for e in &self.counts.send_error_samples {
                let _ = writeln!(s, "- {e}");
            }
        }
        if !self.warnings.is_empty() {
            s.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(s, "- {w}");
            }
        }
        s
    }
}
