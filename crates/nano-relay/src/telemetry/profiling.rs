//! CPU profiles (`[debug] enable_profiling`, build with `--features profiling`): a sampling
//! profile of `profile_duration_seconds`, written as a flame graph SVG to `profile_dir`, again and
//! again until shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Starts the profiler thread when enabled and compiled in; returns its stop flag.
pub(crate) fn start(enabled: bool, every: Duration, dir: PathBuf) -> Option<Arc<AtomicBool>> {
    if !enabled {
        return None;
    }
    if !cfg!(feature = "profiling") {
        tracing::warn!(
            "debug.enable_profiling is set but this build lacks the `profiling` feature; \
             rebuild with `--features profiling`"
        );
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("nano-profiler".into())
        .spawn(move || run(&s, every, &dir));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the profiler");
    }
    Some(stop)
}

/// Sleeps up to `d`, waking early on stop; returns whether to go on.
fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(200);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stop.load(Ordering::Relaxed)
}

#[cfg(feature = "profiling")]
fn run(stop: &AtomicBool, every: Duration, dir: &std::path::Path) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(error = %e, "cannot create the profile directory");
        return;
    }
    loop {
        let guard = match pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
        {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start profiling");
                return;
            }
        };
        let go_on = nap(stop, every);
        match guard.report().build() {
            // An idle relay takes no samples: no empty flame graphs.
            Ok(report) if report.data.is_empty() => {}
            Ok(report) => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let path = dir.join(format!("profile-{secs}.svg"));
                match std::fs::File::create(&path) {
                    Ok(f) => match report.flamegraph(f) {
                        Ok(()) => tracing::info!(path = %path.display(), "profile written"),
                        Err(e) => tracing::warn!(error = %e, "cannot write the profile"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot create the profile file"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot build the profile"),
        }
        if !go_on {
            return;
        }
    }
}

#[cfg(not(feature = "profiling"))]
fn run(stop: &AtomicBool, every: Duration, _dir: &std::path::Path) {
    let _ = nap(stop, every);
}
