//! Session messages that arrived before their session's handshake (PROTOCOL.md §14.14): a
//! sender whose sends go out on two connections (two devices on one store, a send retried after
//! `unavailable`) can have a message stored before the handshake that starts its session. Such a
//! message is parked, unacknowledged, until a handshake from the same sender opens (then it is
//! tried again) or [`PARK_FOR`] passes (then it is reported as unreadable and the sender told).
//! Free of I/O: the connection feeds it and acts on what comes out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nano_proto::MessageId;

/// How long a message waits for its session's handshake.
pub(crate) const PARK_FOR: Duration = Duration::from_secs(10);

/// Most messages parked at once; beyond, the oldest is given up on first.
pub(crate) const MAX_PARKED: usize = 256;

/// A parked message: its sender, its id, when it was first parked, and the message.
#[derive(Debug)]
struct Entry<T> {
    peer: String,
    id: MessageId,
    since: Instant,
    item: T,
}

/// Parked messages, oldest first.
#[derive(Debug)]
pub(crate) struct Parked<T> {
    entries: VecDeque<Entry<T>>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }
}

impl<T> Parked<T> {
    /// Parks `item` (message `id` from `peer`, first parked at `since`). A message parked
    /// already is not parked twice (a redelivery). Returns the entry given up on to make room,
    /// if the set was full.
    pub(crate) fn park(&mut self, peer: &str, id: MessageId, since: Instant, item: T) -> Option<T> {
        if self.entries.iter().any(|e| e.id == id) {
            return None;
        }
        let evicted = if self.entries.len() >= MAX_PARKED {
            self.entries.pop_front().map(|e| e.item)
        } else {
            None
        };
        self.entries.push_back(Entry {
            peer: peer.to_owned(),
            id,
            since,
            item,
        });
        evicted
    }

    /// Takes `peer`'s parked messages, oldest first, each with when it was first parked.
    pub(crate) fn take_peer(&mut self, peer: &str) -> Vec<(T, Instant)> {
        self.take_where(|e| e.peer == peer)
    }

    /// Takes the messages parked for [`PARK_FOR`] or longer at `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<(T, Instant)> {
        self.take_where(|e| now.saturating_duration_since(e.since) >= PARK_FOR)
    }

    /// Forgets every parked message (a connection ended: the relay delivers them again).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// When the first parked message's wait ends, if any is parked.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.since + PARK_FOR).min()
    }

    /// How many are parked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn take_where(&mut self, take: impl Fn(&Entry<T>) -> bool) -> Vec<(T, Instant)> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if take(&e) {
                out.push((e.item, e.since));
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn messages_wait_for_their_peer_or_for_time() {
        let mut p = Parked::default();
        let t0 = Instant::now();
        assert!(p.park("alice", id(1), t0, "a1").is_none());
        assert!(p.park("bob", id(2), t0, "b1").is_none());
        assert!(
            p.park("alice", id(3), t0 + Duration::from_secs(5), "a2")
                .is_none()
        );
        // A redelivery is not parked twice.
        assert!(p.park("alice", id(1), t0, "a1 again").is_none());
        assert_eq!(p.len(), 3);
        let alice: Vec<_> = p.take_peer("alice").into_iter().map(|(m, _)| m).collect();
        assert_eq!(alice, ["a1", "a2"]);
        assert_eq!(p.next_expiry(), Some(t0 + PARK_FOR));
        assert!(
            p.take_expired(t0 + PARK_FOR - Duration::from_millis(1))
                .is_empty()
        );
        let expired = p.take_expired(t0 + PARK_FOR);
        assert_eq!(expired, [("b1", t0)]);
        assert_eq!(p.len(), 0);
        assert_eq!(p.next_expiry(), None);
    }

    #[test]
    fn the_set_is_bounded_and_gives_up_the_oldest() {
        let mut p = Parked::default();
        let t0 = Instant::now();
        let nth = |n: usize| MessageId((n as u128).to_be_bytes());
        for n in 0..MAX_PARKED {
            assert!(p.park("x", nth(n), t0, n).is_none());
        }
        assert_eq!(p.len(), MAX_PARKED);
        assert_eq!(p.park("x", nth(MAX_PARKED), t0, MAX_PARKED), Some(0));
        assert_eq!(p.len(), MAX_PARKED);
        p.clear();
        assert_eq!(p.len(), 0);
    }
}
