//! Who is connected: authenticated sessions by user, and delivery of committed messages to them.
//!
//! Each session has a mailbox: an event queue bounded both in events (`limits.send_queue_depth`)
//! and in payload bytes (`limits.send_queue_bytes`). Delivery never waits: when a session's
//! mailbox is full, the session is a slow reader and is told to close; the message is safe in
//! storage and is delivered when it reconnects. So a slow peer never makes the relay's memory
//! grow beyond its mailbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
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

/// A session's side of its queue: the sender, the slow-reader signal and the byte account.
#[derive(Debug, Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<SessionEvent>,
    /// Cancelled when the session falls behind.
    pub kill: CancellationToken,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl Mailbox {
    /// A mailbox of at most `depth` events and `max_bytes` bytes, and its receiving end.
    pub fn new(depth: usize, max_bytes: usize) -> (Self, mpsc::Receiver<SessionEvent>) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let m = Self {
            tx,
            kill: CancellationToken::new(),
            queued: Arc::new(AtomicUsize::new(0)),
            max_bytes,
        };
        (m, rx)
    }

    /// The session took `ev` off its queue.
    pub fn taken(&self, ev: &SessionEvent) {
        self.queued.fetch_sub(ev.size(), Ordering::Relaxed);
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues `ev`, or tells the session to close when it has fallen behind.
    fn offer(&self, ev: SessionEvent) -> bool {
        let size = ev.size();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.kill.cancel();
            return false;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(e) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.kill.cancel();
                }
                false
            }
        }
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
