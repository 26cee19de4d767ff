//! Several relays side by side: notices between them over Redis pub/sub (when the L2 cache is
//! on).
//!
//! Two channels under the deployment's key prefix:
//! - `invalidate`: a username whose keys rotated; every relay drops it from its L1.
//! - `deliver`: `instance:user_id` after a commit; the relay holding that user's session (if it
//!   is not the committer, which pushed directly) tells the session to read its inbox.
//!
//! Publishing runs on one thread fed by a bounded queue, so the batch writer never waits on
//! Redis; a notice dropped because Redis is down only delays a push until the recipient's next
//! fetch or reconnect, since every message is in the database first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::delivery::hub::Hub;
use crate::directory::Directory;
use crate::directory::l2_cache::RedisCache;

/// Capacity of the publish queue (batches of recipients).
const PUBLISH_QUEUE: usize = 4096;
/// How often the subscriber checks for shutdown.
const POLL: Duration = Duration::from_millis(500);
/// Pause between attempts to subscribe again while Redis is away.
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(500);

/// The cross-relay notice service.
#[derive(Debug)]
pub struct Fanout {
    instance: u64,
    tx: SyncSender<Vec<i64>>,
    stop: Arc<AtomicBool>,
}

impl Fanout {
    /// Starts the publisher and subscriber threads.
    pub fn start(
        cache: Arc<RedisCache>,
        hub: Arc<Hub>,
        directory: Arc<Directory>,
    ) -> std::io::Result<Arc<Self>> {
        let instance = rand::random::<u64>();
        let (tx, rx) = sync_channel(PUBLISH_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let pub_cache = Arc::clone(&cache);
        std::thread::Builder::new()
            .name("nano-fanout-pub".into())
            .spawn(move || publisher(&pub_cache, instance, &rx))?;
        let s = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("nano-fanout-sub".into())
            .spawn(move || subscriber(&cache, instance, &hub, &directory, &s))?;
        Ok(Arc::new(Self { instance, tx, stop }))
    }

    /// This relay's random instance id.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Announces messages committed for `users`.
    pub fn announce_deliveries(&self, users: Vec<i64>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(users) {
            tracing::warn!(
                "fan-out queue full; a cross-relay push is delayed until the next fetch"
            );
        }
    }

    /// Stops the subscriber (the publisher stops when the last sender is dropped).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn publisher(cache: &RedisCache, instance: u64, rx: &Receiver<Vec<i64>>) {
    let channel = cache.channel("deliver");
    while let Ok(mut users) = rx.recv() {
        // Coalesce whatever else is queued into one round trip.
        while let Ok(more) = rx.try_recv() {
            users.extend(more);
        }
        users.sort_unstable();
        users.dedup();
        let payloads: Vec<String> = users.iter().map(|u| format!("{instance}:{u}")).collect();
        if let Err(e) = cache.publish(&channel, &payloads) {
            crate::telemetry::log_limit::warn("cross-relay delivery notice failed", &e);
        }
    }
}

fn subscriber(
    cache: &RedisCache,
    instance: u64,
    hub: &Hub,
    directory: &Directory,
    stop: &AtomicBool,
) {
    let deliver = cache.channel("deliver");
    let invalidate = cache.invalidation_channel();
    // Notices sent before the first subscription (Redis down at start) are a gap too.
    let mut gap = true;
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match cache.subscriber_connection(POLL) {
            Ok(c) => c,
            Err(e) => {
                crate::telemetry::log_limit::warn(
                    "cannot subscribe to relay notices; retrying",
                    &e,
                );
                std::thread::sleep(RESUBSCRIBE_EVERY);
                continue;
            }
        };
        let mut ps = conn.as_pubsub();
        if let Err(e) = ps.subscribe(&[&deliver, &invalidate]) {
            crate::telemetry::log_limit::warn("cannot subscribe to relay notices; retrying", &e);
            std::thread::sleep(RESUBSCRIBE_EVERY);
            continue;
        }
        if gap {
            // Notices published while unsubscribed are lost: every local session reads its
            // inbox once, and no cached bundle outlives a rotation announced in the gap.
            directory.invalidate_all_local();
            let woken = hub.wake_all();
            if woken > 0 {
                tracing::info!(woken, "relay notices resumed");
            }
            gap = false;
        }
        while !stop.load(Ordering::Relaxed) {
            let msg = match ps.get_message() {
                Ok(m) => m,
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    crate::telemetry::log_limit::warn(
                        "relay notice subscription lost; reconnecting",
                        &e,
                    );
                    gap = true;
                    break;
                }
            };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if msg.get_channel_name() == invalidate {
                directory.invalidate_local(&payload);
            } else if let Some((from, user)) = payload.split_once(':') {
                let from_other = from.parse::<u64>().is_ok_and(|f| f != instance);
                if let (true, Ok(user)) = (from_other, user.parse::<i64>()) {
                    hub.wake(user);
                }
            }
        }
    }
}
