//! Messages waiting for their sender's identity bundle (PROTOCOL.md §14.13, "Receiving"). The
//! inbox opens nothing before it holds the sender's trusted keys, and the connection task cannot
//! wait inside the inbox for an answer that arrives on the socket it reads. So a message from a
//! sender whose bundle is not cached waits here: one `get_identity` is written per sender, later
//! messages of that sender wait behind the first, and all of them go to the inbox, in arrival
//! order, when the answer or a refusal comes, or after [`WAIT_FOR`]. Free of I/O: the
//! connection feeds it and acts on what comes out.
//!
//! What waits here is unacknowledged: after a reconnect the relay delivers it again, so the
//! set is cleared then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long messages wait for an answer before the inbox is given them anyway (it then fetches
/// the sender's bundle over HTTP, with that path's errors).
pub(crate) const WAIT_FOR: Duration = Duration::from_secs(10);

/// Most messages waiting at once. One more releases every waiting message to the inbox first.
pub(crate) const MAX_WAITING: usize = 1024;

/// One sender's waiting messages, oldest first.
#[derive(Debug)]
struct Waiting<T> {
    since: Instant,
    items: Vec<T>,
}

/// Senders asked for, each with the messages waiting for its answer.
#[derive(Debug)]
pub(crate) struct Identities<T> {
    senders: HashMap<String, Waiting<T>>,
    count: usize,
}

impl<T> Default for Identities<T> {
    fn default() -> Self {
        Self {
            senders: HashMap::new(),
            count: 0,
        }
    }
}

/// What [`Identities::admit`] made of a batch.
#[derive(Debug)]
pub(crate) struct Admitted<T> {
    /// For the inbox now, in order: released waiting messages first, then the batch's
    /// messages that need no wait.
    pub(crate) ready: Vec<T>,
    /// Senders to ask for (one `get_identity` each), in the order met.
    pub(crate) ask: Vec<String>,
}

impl<T> Identities<T> {
    /// Sorts `items` (each with its sender, if the relay named one): an item whose sender is
    /// asked for already waits behind that sender's earlier ones; one whose sender's bundle is
    /// not `known` starts a wait (and the sender is to be asked for); the rest are ready. When
    /// the set is full, everything waiting is released first, so nothing is held without
    /// bound and no sender's messages overtake each other.
    pub(crate) fn admit(
        &mut self,
        items: Vec<(Option<String>, T)>,
        known: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Admitted<T> {
        let mut out = Admitted {
            ready: Vec::new(),
            ask: Vec::new(),
        };
        for (sender, item) in items {
            let Some(sender) = sender else {
                out.ready.push(item);
                continue;
            };
            let waits = self.senders.contains_key(&sender);
            if !waits && known(&sender) {
                out.ready.push(item);
                continue;
            }
            if self.count >= MAX_WAITING {
                out.ready.extend(self.release_all());
                if known(&sender) {
                    out.ready.push(item);
                    continue;
                }
            }
            self.count += 1;
            let w = self.senders.entry(sender).or_insert_with_key(|name| {
                out.ask.push(name.clone());
                Waiting {
                    since: now,
                    items: Vec::new(),
                }
            });
            w.items.push(item);
        }
        out
    }

    /// The messages waiting for `sender`, oldest first: its answer (or refusal) came.
    pub(crate) fn answered(&mut self, sender: &str) -> Vec<T> {
        let items = self
            .senders
            .remove(sender)
            .map(|w| w.items)
            .unwrap_or_default();
        self.count -= items.len();
        items
    }

    /// The messages of every sender asked for at least [`WAIT_FOR`] before `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<T> {
        let due: Vec<String> = self
            .senders
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.since) >= WAIT_FOR)
            .map(|(name, _)| name.clone())
            .collect();
        due.iter().flat_map(|name| self.answered(name)).collect()
    }

    /// When the oldest wait ends.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.senders.values().map(|w| w.since + WAIT_FOR).min()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets everything waiting (the connection is gone; the relay delivers it again).
    pub(crate) fn clear(&mut self) {
        self.senders.clear();
        self.count = 0;
    }

    fn release_all(&mut self) -> Vec<T> {
        self.count = 0;
        self.senders.drain().flat_map(|(_, w)| w.items).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(items: &[(Option<&str>, u32)]) -> Vec<(Option<String>, u32)> {
        items
            .iter()
            .map(|(s, n)| (s.map(str::to_owned), *n))
            .collect()
    }

    #[test]
    fn a_new_sender_is_asked_for_once_and_its_messages_wait_in_order() {
        let mut ids = Identities::default();
        let now = Instant::now();
        let known = |name: &str| name == "carol";
        let a = ids.admit(
            batch(&[
                (Some("bob"), 1),
                (None, 2),
                (Some("carol"), 3),
                (Some("bob"), 4),
                (Some("dave"), 5),
            ]),
            known,
            now,
        );
        assert_eq!(a.ready, [2, 3]);
        assert_eq!(a.ask, ["bob", "dave"]);
        // bob's later message waits behind his first, even once his bundle is known.
        let b = ids.admit(batch(&[(Some("bob"), 6)]), |_| true, now);
        assert!(b.ready.is_empty() && b.ask.is_empty());
        assert_eq!(ids.answered("bob"), [1, 4, 6]);
        assert!(ids.answered("bob").is_empty());
        assert!(!ids.is_empty());
        assert_eq!(ids.answered("dave"), [5]);
        assert!(ids.is_empty());
    }

    #[test]
    fn waits_end_after_wait_for() {
        let mut ids = Identities::default();
        let t0 = Instant::now();
        ids.admit(batch(&[(Some("bob"), 1)]), |_| false, t0);
        let later = t0 + Duration::from_secs(3);
        ids.admit(batch(&[(Some("dave"), 2)]), |_| false, later);
        assert_eq!(ids.next_expiry(), Some(t0 + WAIT_FOR));
        assert!(
            ids.expired(t0 + WAIT_FOR - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(ids.expired(t0 + WAIT_FOR), [1]);
        assert_eq!(ids.next_expiry(), Some(later + WAIT_FOR));
        assert_eq!(ids.expired(later + WAIT_FOR), [2]);
        assert_eq!(ids.next_expiry(), None);
        assert!(ids.is_empty());
    }

    #[test]
    fn a_full_set_releases_everything_before_holding_more() {
        let mut ids = Identities::default();
        let now = Instant::now();
        let items: Vec<(Option<String>, u32)> = (0..MAX_WAITING as u32)
            .map(|n| (Some(format!("user{}", n % 7)), n))
            .collect();
        let a = ids.admit(items, |_| false, now);
        assert!(a.ready.is_empty());
        assert_eq!(a.ask.len(), 7);
        // One more: all that waited comes out, each sender's messages in their order, and the
        // new one starts a new wait.
        let b = ids.admit(batch(&[(Some("user3"), 99_999)]), |_| false, now);
        assert_eq!(b.ready.len(), MAX_WAITING);
        for s in 0..7u32 {
            let of: Vec<u32> = b.ready.iter().copied().filter(|n| n % 7 == s).collect();
            assert!(
                of.windows(2).all(|w| w[0] < w[1]),
                "sender {s} out of order"
            );
        }
        assert_eq!(b.ask, ["user3"]);
        assert_eq!(ids.answered("user3"), [99_999]);
        assert!(ids.is_empty());
        // Full again with one sender: a message from another, known sender needs no wait; one
        // more from the waiting sender, now known, releases the rest and goes out behind them.
        let items: Vec<(Option<String>, u32)> = (0..MAX_WAITING as u32)
            .map(|n| (Some("x".into()), n))
            .collect();
        ids.admit(items, |_| false, now);
        let c = ids.admit(batch(&[(Some("y"), 7)]), |n| n == "y", now);
        assert_eq!(c.ready, [7]);
        assert!(!ids.is_empty());
        let d = ids.admit(batch(&[(Some("x"), 99_999)]), |_| true, now);
        assert_eq!(d.ready.len(), MAX_WAITING + 1);
        assert!(d.ready.windows(2).all(|w| w[0] < w[1]));
        assert!(d.ask.is_empty() && ids.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut ids = Identities::default();
        ids.admit(batch(&[(Some("bob"), 1)]), |_| false, Instant::now());
        ids.clear();
        assert!(ids.is_empty());
        assert_eq!(ids.next_expiry(), None);
        assert!(ids.answered("bob").is_empty());
    }
}
