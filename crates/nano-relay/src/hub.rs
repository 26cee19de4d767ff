//! Who is connected: authenticated sessions by user, and delivery of committed messages to them.
//!
//! Each session has a bounded event queue (`limits.send_queue_depth`). Delivery never waits: when
//! a session's queue is full, the session is a slow reader and is told to close; the message is
//! safe in storage and is delivered when it reconnects. So a slow peer never makes the relay's
//! memory grow.

use std::collections::HashMap;
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
}

#[derive(Debug)]
struct Entry {
    conn_id: u64,
    tx: mpsc::Sender<SessionEvent>,
    kill: CancellationToken,
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

    /// Registers connection `conn_id` of `user_id`; `kill` is cancelled if it falls behind.
    pub fn register(
        &self,
        user_id: i64,
        conn_id: u64,
        tx: mpsc::Sender<SessionEvent>,
        kill: CancellationToken,
    ) {
        self.lock()
            .entry(user_id)
            .or_default()
            .push(Entry { conn_id, tx, kill });
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

    /// Whether `user_id` has a session here.
    pub fn is_online(&self, user_id: i64) -> bool {
        self.lock().contains_key(&user_id)
    }

    /// Hands `msg` to every session of `user_id`; returns how many took it.
    pub fn deliver(&self, user_id: i64, msg: &Arc<StoredMessage>) -> usize {
        self.send(user_id, || SessionEvent::Deliver(Arc::clone(msg)))
    }

    /// Tells every session of `user_id` to read its inbox.
    pub fn wake(&self, user_id: i64) -> usize {
        self.send(user_id, || SessionEvent::Wake)
    }

    fn send(&self, user_id: i64, event: impl Fn() -> SessionEvent) -> usize {
        let map = self.lock();
        let Some(entries) = map.get(&user_id) else {
            return 0;
        };
        let mut n = 0;
        for e in entries {
            match e.tx.try_send(event()) {
                Ok(()) => n += 1,
                Err(mpsc::error::TrySendError::Full(_)) => e.kill.cancel(),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        n
    }

    /// Connected users.
    pub fn users(&self) -> usize {
        self.lock().len()
    }
}
