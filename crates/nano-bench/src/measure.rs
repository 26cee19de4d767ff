//! The timing harness.
//!
//! An operation runs in batches of roughly `batch` wall time after a warm-up; the figure is the
//! median batch rate, which shrugs off the odd descheduled batch on a shared 2-core machine.
//! "All cores" runs one copy per available core at once and adds their medians.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) warmup: Duration,
    pub(crate) total: Duration,
    pub(crate) batch: Duration,
}

impl Budget {
    pub(crate) fn full() -> Self {
        Self {
            warmup: Duration::from_millis(250),
            total: Duration::from_millis(1200),
            batch: Duration::from_millis(20),
        }
    }

    pub(crate) fn quick() -> Self {
        Self {
            warmup: Duration::from_millis(20),
            total: Duration::from_millis(120),
            batch: Duration::from_millis(5),
        }
    }
}

/// Median operations per second of `op` on the calling thread. `op` returns how many
/// operations one call performed (1 for most; 64 for a batch of 64).
pub(crate) fn ops_per_sec<T>(budget: Budget, mut op: impl FnMut() -> (u64, T)) -> f64 {
    let start = Instant::now();
    while start.elapsed() < budget.warmup {
        black_box(op());
    }
    let mut rates = Vec::new();
    let end = Instant::now() + budget.total;
    while Instant::now() < end || rates.len() < 3 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < budget.batch {
            n += black_box(op()).0;
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The sum over one thread per core of [`ops_per_sec`], all running at once. `make` builds
/// each thread's own operation (its own keys and buffers).
pub(crate) fn ops_per_sec_all_cores<F, T>(budget: Budget, make: impl Fn() -> F + Sync) -> f64
where
    F: FnMut() -> (u64, T),
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|_| s.spawn(|| ops_per_sec(budget, make())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}
