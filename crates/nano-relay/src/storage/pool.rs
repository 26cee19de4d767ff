//! A fixed set of database connections (`storage.pool_size`), each behind its own mutex.
//!
//! `get` takes the first free connection, or waits for one in turn when all are busy. Blocking
//! tasks are the only callers, so waiting on a mutex is fine.
//!
//! Why not r2d2 (which the PostgreSQL backend uses): `r2d2_sqlite` must be built against
//! exactly our `rusqlite` (`libsqlite3-sys` links one native library per binary), tying every
//! SQLite upgrade to its releases; and a SQLite connection never drops on its own, so r2d2's
//! health checks and reconnection would have nothing to do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A pool of `T`.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    slots: Vec<Mutex<T>>,
    next: AtomicUsize,
}

impl<T> Pool<T> {
    /// A pool of these connections (at least one).
    pub(crate) fn new(items: Vec<T>) -> Option<Self> {
        if items.is_empty() {
            return None;
        }
        Some(Self {
            slots: items.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// A connection: a free one if any, else the next in turn.
    pub(crate) fn get(&self) -> MutexGuard<'_, T> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.slots[(start + i) % n].try_lock() {
                return g;
            }
        }
        // A panic mid-transaction drops the transaction, which rolls back: safe to reuse.
        self.slots[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
