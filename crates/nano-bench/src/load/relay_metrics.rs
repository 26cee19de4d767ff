//! What the bench reads from the relay's own `/metrics`: samples of RSS, CPU and connections
//! every second, settled RSS, and single counters at the end of a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::report::Sample;

/// Samples the relay's `/metrics` every second until `stop`.
pub(crate) async fn sample(api: String, stop: Arc<AtomicBool>, epoch: Instant) -> Vec<Sample> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut last: Option<(Instant, f64)> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = http.get(format!("{api}/metrics")).send().await
            && let Ok(text) = r.text().await
        {
            let val = |name: &str| metric(&text, name).unwrap_or(0.0);
            let cpu = val("nano_messenger_cpu_usage_seconds_total");
            let now = Instant::now();
            let pct = last.map_or(0.0, |(t, c)| {
                (cpu - c) / now.duration_since(t).as_secs_f64() * 100.0
            });
            last = Some((now, cpu));
            out.push(Sample {
                t_s: epoch.elapsed().as_secs_f64(),
                rss_mb: val("nano_messenger_memory_usage_bytes") / 1e6,
                cpu_percent: pct,
                connections: val("nano_messenger_active_connections") as u64,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out
}

/// The value of the unlabelled metric `name` in Prometheus text `text`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
}

/// The relay's unlabelled metric `name` now, from its `/metrics`.
pub(crate) async fn relay_metric(api: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric(&text, name)
}

/// The relay's resident set size in bytes.
async fn relay_rss(api: &str) -> Option<f64> {
    relay_metric(api, "nano_messenger_memory_usage_bytes").await
}

/// The relay's RSS once it has settled: past the clients' HTTP keep-alive (5 s), so only
/// WebSocket connections remain, and then no new low for 5 s in a row (an allocator returns
/// freed memory over seconds), within 60 s.
pub(crate) async fn settled_rss(api: &str) -> Option<f64> {
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut low = relay_rss(api).await?;
    let mut quiet = 0;
    for _ in 0..53 {
        if quiet >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let v = relay_rss(api).await?;
        if v < low * 0.995 {
            quiet = 0;
        } else {
            quiet += 1;
        }
        low = low.min(v);
    }
    Some(low)
}

/// The relay's `nano_messenger_messages_acked_total` once it has reached `expected` (acks are
/// applied asynchronously, group-committed), or stopped changing for 2 s, within 15 s.
pub(crate) async fn acks_applied(api: &str, expected: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    let mut still = Instant::now();
    loop {
        let now = relay_metric(api, "nano_messenger_messages_acked_total")
            .await
            .map(|v| v as u64);
        if now >= Some(expected) || Instant::now() >= deadline {
            return now;
        }
        if now != last {
            last = now;
            still = Instant::now();
        } else if still.elapsed() >= Duration::from_secs(2) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_the_named_metric_only() {
        let text =
            "# HELP x\nnano_a_total 3\nnano_a_total_other 9\nnano_b{l=\"x\"} 4\nnano_c 1.5\n";
        assert_eq!(metric(text, "nano_a_total"), Some(3.0));
        assert_eq!(metric(text, "nano_c"), Some(1.5));
        assert_eq!(metric(text, "nano_b"), None);
        assert_eq!(metric(text, "nano_missing"), None);
    }
}
