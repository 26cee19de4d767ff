//! Rate-limited logging of repeated failures.
//!
//! While a dependency is down (the database restarting, Redis gone), the same failure repeats
//! for every commit, connection attempt or request. Each kind of failure is logged once, then at
//! most once per [`INTERVAL`] with how many were suppressed since the last line, so an outage
//! costs a few lines a minute instead of one per failed operation.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Least time between two lines for the same kind of failure.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Kinds tracked at most (kinds are static strings, so this only guards against misuse).
const MAX_KINDS: usize = 256;

#[derive(Debug)]
struct Entry {
    last: Instant,
    suppressed: u64,
}

static SEEN: LazyLock<Mutex<HashMap<&'static str, Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether a line for `kind` is due now; if so, how many were suppressed before it.
fn due(kind: &'static str, now: Instant) -> Option<u64> {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.len() >= MAX_KINDS && !seen.contains_key(kind) {
        seen.clear();
    }
    match seen.get_mut(kind) {
        Some(e) if now.duration_since(e.last) < INTERVAL => {
            e.suppressed += 1;
            None
        }
        Some(e) => {
            let n = e.suppressed;
            e.last = now;
            e.suppressed = 0;
            Some(n)
        }
        None => {
            seen.insert(
                kind,
                Entry {
                    last: now,
                    suppressed: 0,
                },
            );
            Some(0)
        }
    }
}

/// Logs `kind` (a fixed description) with `error` at WARN, rate-limited per kind.
pub(crate) fn warn(kind: &'static str, error: &dyn std::fmt::Display) {
    if let Some(suppressed) = due(kind, Instant::now()) {
        tracing::warn!(error = %error, suppressed, "{kind}");
    }
}

/// As [`warn`], at ERROR.
pub(crate) fn error(kind: &'static str, error: &dyn std::fmt::Display) {
    if let Some(suppressed) = due(kind, Instant::now()) {
        tracing::error!(error = %error, suppressed, "{kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let t0 = Instant::now();
        let kind = "log_limit test kind";
        assert_eq!(due(kind, t0), Some(0));
        for i in 1..=5 {
            assert_eq!(due(kind, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(due(kind, t0 + INTERVAL), Some(5));
        assert_eq!(due(kind, t0 + INTERVAL + Duration::from_millis(1)), None);
        assert_eq!(due("log_limit other kind", t0), Some(0));
    }
}
