//! Who is connected: authenticated sessions by user, and delivery of committed messages to them.
//!
//! Each session has a mailbox: an event queue bounded both in events (`limits.send_queue_depth`)
//! and in payload bytes (`limits.send_queue_bytes`). Delivery never waits: when a session's
//! mailbox is full, the session is a slow reader and is told to close; the message is safe in
//! storage and is delivered when it reconnects. So a slow peer never makes the relay's memory
//! grow beyond its mailbox.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::storage::StoredMessage;

/// What the relay tells a session from outside its connection.
#[derive(Debug)]
pub enum SessionEvent {
    /// A message committed for this user on this relay.
    Deliver(Arc<StoredMessage>),
    /// Messages were committed for this user on another relay: read the inbox.
    Wake,
    /// A message stored earlier that may never have been pushed (its first commit's answer
    /// was lost, so the writer did not hand it over; the sender's resend found it stored):
    /// pushed whatever the session's cursor, since its sequence number may be below it.
    Redeliver(Arc<StoredMessage>),
}

impl SessionEvent {
    /// Bytes this event holds while queued (the payload it shares plus a frame's worth).
    pub fn size(&self) -> usize {
        match self {
            Self::Deliver(m) | Self::Redeliver(m) => m.payload.len() + 64,
            Self::Wake => 0,
        }
    }
}

/// A session's queue, shared by the hub (which offers events) and the session (which takes
/// them): one allocation that holds nothing while the session is idle (an idle connection's
/// memory counts: tens of thousands are held at once).
#[derive(Debug)]
struct Queue {
    queued: Mutex<Queued>,
    /// Wakes the session when an event arrives.
    ready: Notify,
    depth: usize,
    max_bytes: usize,
}

/// The events waiting and the bytes they hold ([`SessionEvent::size`]).
#[derive(Debug, Default)]
struct Queued {
    events: VecDeque<SessionEvent>,
    bytes: usize,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The hub's side of a session's queue, and the slow-reader signal. Cloning shares the queue.
#[derive(Debug, Clone)]
pub struct Mailbox {
    queue: Arc<Queue>,
    /// Cancelled when the session falls behind.
    pub kill: CancellationToken,
}

/// The session's side of its queue.
#[derive(Debug)]
pub struct Events {
    queue: Arc<Queue>,
}

impl Mailbox {
    /// A mailbox of at most `depth` events and `max_bytes` bytes, and its receiving end.
    pub fn new(depth: usize, max_bytes: usize) -> (Self, Events) {
        let kill = CancellationToken::new();
        let queue = Arc::new(Queue {
            queued: Mutex::new(Queued::default()),
            ready: Notify::new(),
            depth: depth.max(1),
            max_bytes,
        });
        (
            Self {
                queue: Arc::clone(&queue),
                kill,
            },
            Events { queue },
        )
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Queues `ev`, or tells the session to close when it has fallen behind (its queue holds
    /// `depth` events or `max_bytes` bytes).
    fn offer(&self, ev: SessionEvent) -> bool {
        let q = &self.queue;
        let size = ev.size();
        {
            let mut queued = q.lock();
            if queued.events.len() >= q.depth || queued.bytes + size > q.max_bytes {
                drop(queued);
                self.kill.cancel();
                return false;
            }
            queued.bytes += size;
            queued.events.push_back(ev);
        }
        q.ready.notify_one();
        true
    }
}

impl Events {
    fn pop(&self) -> Option<SessionEvent> {
        let mut queued = self.queue.lock();
        let ev = queued.events.pop_front()?;
        queued.bytes -= ev.size();
        if queued.events.is_empty() && queued.events.capacity() > 0 {
            // An idle session holds no queue storage.
            queued.events = VecDeque::new();
        }
        Some(ev)
    }

    /// The next event, waiting for one. Cancel-safe: an event is taken only when returned.
    pub async fn recv(&mut self) -> SessionEvent {
        loop {
            if let Some(ev) = self.pop() {
                return ev;
            }
            self.queue.ready.notified().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<SessionEvent> {
        self.pop()
    }
}

#[derive(Debug)]
struct Entry {
    conn_id: u64,
    mailbox: Mailbox,
}

/// The registry of authenticated sessions.
#[derive(Debug, Default)]
pub struct Hub {
    sessions: Mutex<HashMap<i64, Vec<Entry>>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn_id` of `user_id` with its mailbox.
    pub fn register(&self, user_id: i64, conn_id: u64, mailbox: Mailbox) {
        self.lock()
            .entry(user_id)
            .or_default()
            .push(Entry { conn_id, mailbox });
    }

    /// Removes connection `conn_id` of `user_id`.
    pub fn unregister(&self, user_id: i64, conn_id: u64) {
        let mut map = self.lock();
        if let Some(v) = map.get_mut(&user_id) {
            v.retain(|e| e.conn_id != conn_id);
            if v.is_empty() {
                map.remove(&user_id);
            }
        }
    }

    /// Hands `msg` to every session of `user_id`; returns how many took it.
    pub fn deliver(&self, user_id: i64, msg: &Arc<StoredMessage>) -> usize {
        self.send(user_id, || SessionEvent::Deliver(Arc::clone(msg)))
    }

    /// Hands `msg` to every session of `user_id` as a [`SessionEvent::Redeliver`].
    pub fn redeliver(&self, user_id: i64, msg: &Arc<StoredMessage>) -> usize {
        self.send(user_id, || SessionEvent::Redeliver(Arc::clone(msg)))
    }

    /// Tells every session of `user_id` to read its inbox.
    pub fn wake(&self, user_id: i64) -> usize {
        self.send(user_id, || SessionEvent::Wake)
    }

    /// Tells every session on this relay to read its inbox (after a gap in the delivery
    /// notices from other relays); returns how many took it.
    pub fn wake_all(&self) -> usize {
        let map = self.lock();
        map.values()
            .flatten()
            .filter(|e| e.mailbox.offer(SessionEvent::Wake))
            .count()
    }

    fn send(&self, user_id: i64, event: impl Fn() -> SessionEvent) -> usize {
        let map = self.lock();
        let Some(entries) = map.get(&user_id) else {
            return 0;
        };
        entries.iter().filter(|e| e.mailbox.offer(event())).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mailbox_takes_depth_events_then_marks_a_slow_reader() {
        let hub = Hub::default();
        let (mailbox, mut events) = Mailbox::new(2, 1 << 20);
        let kill = mailbox.kill.clone();
        hub.register(7, 1, mailbox.clone());
        assert_eq!(hub.wake(7), 1);
        assert_eq!(hub.wake(7), 1);
        assert!(!kill.is_cancelled());
        assert_eq!(hub.wake(7), 0, "a third event is over the depth");
        assert!(kill.is_cancelled());
        assert!(matches!(events.recv().await, SessionEvent::Wake));
        assert!(matches!(events.try_recv(), Some(SessionEvent::Wake)));
        assert!(events.try_recv().is_none());
        // An emptied queue holds no storage.
        assert_eq!(mailbox.queue.lock().events.capacity(), 0);
        hub.unregister(7, 1);
        assert_eq!(hub.wake(7), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_an_offer() {
        let (mailbox, mut events) = Mailbox::new(4, 1 << 20);
        let waiter = tokio::spawn(async move { events.recv().await });
        tokio::task::yield_now().await;
        assert!(mailbox.offer(SessionEvent::Wake));
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("recv woke")
            .expect("task");
        assert!(matches!(ev, SessionEvent::Wake));
    }
}
