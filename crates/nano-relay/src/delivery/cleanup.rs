//! Storage upkeep in the background. Expiry: every `storage.cleanup_interval_seconds`,
//! tombstones of acked messages older than [`nano_proto::TOMBSTONE_KEEP_MS`] and undelivered
//! messages older than `storage.message_retention_days` are deleted in bounded batches, so one
//! pass never holds a long transaction. Checkpoints: SQLite's write-ahead log
//! is copied back into the database every `CHECKPOINT_EVERY`, beside the writer rather than in
//! the middle of one of its commits.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::state::Shared;

/// Rows deleted per transaction.
pub(crate) const BATCH: u32 = 1_000;
/// Batches per pass at most; the rest waits for the next tick.
const MAX_BATCHES_PER_PASS: u32 = 100;

/// A timer that skips ticks a slow pass overran rather than bunching them.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; false once the relay is shutting down.
async fn next_tick(shared: &Shared, tick: &mut tokio::time::Interval) -> bool {
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        _ = tick.tick() => true,
    }
}

/// Time between checkpoints. Short, so each copies little and no commit waits behind a large
/// one (p99 at 1,000 msg/s in docs/BENCHMARKS.md §6); not shorter, since a page written by
/// several commits in one interval is copied (and synced) once (hybrid end to end: 14,935
/// msg/s with 20 ms, 17,558 with 100 ms). Nothing runs while nothing is written.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoints until shutdown (SQLite only).
pub(crate) async fn checkpoints(shared: Arc<Shared>) {
    if shared.storage.backend() != "sqlite" {
        return;
    }
    let mut tick = ticker(CHECKPOINT_EVERY);
    while next_tick(&shared, &mut tick).await {
        if !shared.storage.wants_checkpoint() {
            continue;
        }
        if let Err(e) = shared.blocking(|s| s.storage.checkpoint()).await {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}

/// Runs until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let every = Duration::from_secs(shared.config.storage.cleanup_interval_seconds);
    let retention_ms = i64::from(shared.config.storage.message_retention_days) * 86_400_000;
    let mut tick = ticker(every);
    while next_tick(&shared, &mut tick).await {
        let mut total = 0u64;
        for _ in 0..MAX_BATCHES_PER_PASS {
            let now = now_ms();
            let before = now.saturating_sub(retention_ms);
            let tombstones = now.saturating_sub(nano_proto::TOMBSTONE_KEEP_MS);
            match shared
                .blocking(move |s| s.storage.cleanup(before, tombstones, BATCH))
                .await
            {
                Ok(n) => {
                    total += n;
                    shared.metrics.cleanup_deleted.inc_by(n);
                    if n < u64::from(BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cleanup pass failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::debug!(deleted = total, "cleanup pass");
        }
    }
}
