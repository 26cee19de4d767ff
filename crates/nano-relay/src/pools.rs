//! `[memory]` pools (`enable_memory_pools`): pre-generated ephemeral key pairs
//! (`key_pool_size`) and reusable buffers for outgoing frames (`message_pool_size`).
//!
//! Key pairs are generated ahead on the crypto pool, so a `key_exchange` that needs a new key
//! (a cache expiry, or every request with key caching off) takes one instead of waiting for
//! key generation. Frame buffers return to the pool when the transport has written them, so a
//! busy connection encodes without allocating.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use nano_crypto::{CryptoMode, KemKeyPair, OsRng};

use crate::crypto::pool::CryptoPool;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pre-generated KEM key pairs per mode.
#[derive(Debug)]
pub struct KeyPool {
    keys: Mutex<HashMap<CryptoMode, Vec<KemKeyPair>>>,
    refilling: Mutex<HashSet<CryptoMode>>,
    per_mode: usize,
    workers: Arc<CryptoPool>,
}

impl KeyPool {
    /// A pool holding up to `total` keys, shared evenly among `modes`, generated on `workers`.
    pub fn new(total: usize, modes: &[CryptoMode], workers: Arc<CryptoPool>) -> Arc<Self> {
        Arc::new(Self {
            keys: Mutex::new(modes.iter().map(|m| (*m, Vec::new())).collect()),
            refilling: Mutex::new(HashSet::new()),
            per_mode: total / modes.len().max(1),
            workers,
        })
    }

    /// Keys waiting for `mode`.
    pub fn available(&self, mode: CryptoMode) -> usize {
        lock(&self.keys).get(&mode).map_or(0, Vec::len)
    }

    /// A pre-generated key for `mode`, if one is ready; starts a refill when running low.
    pub fn take(self: &Arc<Self>, mode: CryptoMode) -> Option<KemKeyPair> {
        let (kp, left) = {
            let mut keys = lock(&self.keys);
            let v = keys.get_mut(&mode)?;
            (v.pop(), v.len())
        };
        if left < self.per_mode / 2 {
            self.spawn_refill(mode);
        }
        kp
    }

    /// Fills every mode in the background (at startup).
    pub fn warm(self: &Arc<Self>) {
        let modes: Vec<CryptoMode> = lock(&self.keys).keys().copied().collect();
        for m in modes {
            self.spawn_refill(m);
        }
    }

    fn spawn_refill(self: &Arc<Self>, mode: CryptoMode) {
        if self.per_mode == 0 || !lock(&self.refilling).insert(mode) {
            return;
        }
        let me = Arc::clone(self);
        let started = self.workers.spawn_detached(move || {
            me.refill(mode);
            lock(&me.refilling).remove(&mode);
        });
        if !started {
            lock(&self.refilling).remove(&mode);
        }
    }

    fn refill(&self, mode: CryptoMode) {
        while self.available(mode) < self.per_mode {
            match KemKeyPair::generate(mode, &mut OsRng) {
                Ok(kp) => {
                    if let Some(v) = lock(&self.keys).get_mut(&mode) {
                        v.push(kp);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "key pool refill failed");
                    return;
                }
            }
        }
    }
}

/// Buffers kept for reuse, each at most this large (bigger ones are freed).
const MAX_KEPT_BUFFER: usize = 64 * 1024;

/// Reusable byte buffers for encoding frames.
#[derive(Debug)]
pub struct BufferPool {
    bufs: Mutex<Vec<Vec<u8>>>,
    cap: usize,
}

/// A buffer that goes back to its pool when dropped.
#[derive(Debug)]
pub struct PooledBuf {
    /// The bytes.
    pub buf: Vec<u8>,
    pool: Option<Arc<BufferPool>>,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(p) = &self.pool
            && self.buf.capacity() <= MAX_KEPT_BUFFER
        {
            let mut bufs = lock(&p.bufs);
            if bufs.len() < p.cap {
                let mut b = std::mem::take(&mut self.buf);
                b.clear();
                bufs.push(b);
            }
        }
    }
}

impl BufferPool {
    /// A pool keeping up to `cap` buffers.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            bufs: Mutex::new(Vec::new()),
            cap,
        })
    }

    /// An empty buffer, reused when one is free.
    pub fn take(self: &Arc<Self>) -> PooledBuf {
        let buf = lock(&self.bufs).pop().unwrap_or_default();
        PooledBuf {
            buf,
            pool: Some(Arc::clone(self)),
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        lock(&self.bufs).len()
    }
}

impl PooledBuf {
    /// A buffer that is freed, not pooled (pools off).
    pub fn unpooled() -> Self {
        Self {
            buf: Vec::new(),
            pool: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_the_cap() {
        let p = BufferPool::new(2);
        let mut a = p.take();
        a.buf.extend_from_slice(b"hello");
        let b = p.take();
        let c = p.take();
        drop((a, b, c));
        assert_eq!(p.idle(), 2);
        let d = p.take();
        assert!(d.buf.is_empty(), "a reused buffer starts empty");
        assert_eq!(p.idle(), 1);
    }

    #[test]
    fn oversized_buffers_are_freed() {
        let p = BufferPool::new(4);
        let mut a = p.take();
        a.buf.reserve(MAX_KEPT_BUFFER * 2);
        drop(a);
        assert_eq!(p.idle(), 0);
    }

    #[test]
    fn key_pool_fills_and_serves_the_right_mode() {
        let workers = Arc::new(CryptoPool::new(1, 8).unwrap());
        let pool = KeyPool::new(4, &[CryptoMode::Classical, CryptoMode::Hybrid], workers);
        pool.refill(CryptoMode::Classical);
        assert_eq!(pool.available(CryptoMode::Classical), 2);
        let kp = pool.take(CryptoMode::Classical).unwrap();
        assert_eq!(kp.mode(), CryptoMode::Classical);
        assert!(pool.take(CryptoMode::Quantum).is_none());
    }
}
