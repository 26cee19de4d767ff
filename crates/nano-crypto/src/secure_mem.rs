//! Locked memory for long-lived secrets: the crate's only `unsafe` code.
//!
//! Why: identity secret keys live for the whole process. `mlock` keeps them out of swap and
//! `MADV_DONTDUMP` out of core dumps. Each [`SecureBox`] owns whole pages (page-aligned, size
//! rounded up), so unlocking one never unlocks a neighbour's page. Locked bytes are capped
//! (`max_locked_memory_mb` in the relay config); past the cap, or when the OS refuses `mlock`
//! (e.g. `RLIMIT_MEMLOCK`), the allocation proceeds unlocked, a warning is logged once and the
//! event is counted, so a misconfigured host degrades to ordinary memory instead of failing.
//! Contents are zeroized before the pages are unlocked and freed.
//!
//! Safety argument, in one place: `ptr` comes from `alloc_zeroed` with `layout` (non-zero size,
//! page alignment), is exclusively owned by its box, is never exposed beyond the lifetime of a
//! borrow of the box, and is freed exactly once in `Drop` with the same `layout`.
#![allow(unsafe_code)]

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::sync::Once;

use zeroize::Zeroize;

/// Counters describing locked-memory use; exported as metrics by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecureMemoryStats {
    /// Bytes currently locked (whole pages).
    pub locked_bytes: usize,
    /// The configured cap on locked bytes.
    pub cap_bytes: usize,
    /// Allocations that stayed unlocked because `mlock` was refused.
    pub mlock_failures: u64,
    /// Allocations that stayed unlocked because the cap was reached.
    pub over_cap: u64,
}

/// Hands out [`SecureBox`]es and accounts for locked memory.
#[derive(Debug)]
pub struct SecureAllocator {
    enabled: AtomicBool,
    cap_bytes: AtomicUsize,
    locked_bytes: AtomicUsize,
    mlock_failures: AtomicU64,
    over_cap: AtomicU64,
    warned_cap: Once,
    warned_refused: Once,
}

static GLOBAL: SecureAllocator = SecureAllocator::new(true, 64 * 1024 * 1024);

impl SecureAllocator {
    /// An allocator with its own accounting. Most code uses [`SecureAllocator::global`].
    pub const fn new(enabled: bool, cap_bytes: usize) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            cap_bytes: AtomicUsize::new(cap_bytes),
            locked_bytes: AtomicUsize::new(0),
            mlock_failures: AtomicU64::new(0),
            over_cap: AtomicU64::new(0),
            warned_cap: Once::new(),
            warned_refused: Once::new(),
        }
    }

    /// The process-wide allocator used by identity keys.
    pub fn global() -> &'static SecureAllocator {
        &GLOBAL
    }

    /// Turns locking on or off and sets the cap (`use_secure_allocator`, `max_locked_memory_mb`).
    /// Existing boxes keep their state.
    pub fn configure(&self, enabled: bool, cap_bytes: usize) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.cap_bytes.store(cap_bytes, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> SecureMemoryStats {
        SecureMemoryStats {
            locked_bytes: self.locked_bytes.load(Ordering::Relaxed),
            cap_bytes: self.cap_bytes.load(Ordering::Relaxed),
            mlock_failures: self.mlock_failures.load(Ordering::Relaxed),
            over_cap: self.over_cap.load(Ordering::Relaxed),
        }
    }

    /// Allocates `len` zeroed bytes, locked when enabled and under the cap.
    pub fn allocate(&'static self, len: usize) -> SecureBox {
        let page = page_size();
        let Some(size) = len.max(1).checked_next_multiple_of(page) else {
            handle_alloc_error(Layout::new::<u8>())
        };
        let Ok(layout) = Layout::from_size_align(size, page) else {
            handle_alloc_error(Layout::new::<u8>())
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let locked = self.enabled.load(Ordering::Relaxed) && self.try_lock(ptr, size);
        SecureBox {
            ptr,
            len,
            layout,
            locked,
            owner: self,
        }
    }

    fn try_lock(&self, ptr: NonNull<u8>, size: usize) -> bool {
        let cap = self.cap_bytes.load(Ordering::Relaxed);
        let reserved = self
            .locked_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(size).filter(|n| *n <= cap)
            })
            .is_ok();
        if !reserved {
            self.over_cap.fetch_add(1, Ordering::Relaxed);
            self.warned_cap.call_once(|| {
                tracing::warn!(
                    target: "nano_crypto::secure_mem",
                    "locked-memory cap reached; further secret keys stay in ordinary memory"
                );
            });
            return false;
        }
        if os::lock(ptr, size) {
            true
        } else {
            self.locked_bytes.fetch_sub(size, Ordering::AcqRel);
            self.mlock_failures.fetch_add(1, Ordering::Relaxed);
            self.warned_refused.call_once(|| {
                tracing::warn!(
                    target: "nano_crypto::secure_mem",
                    "mlock refused by the OS; secret keys stay in ordinary memory"
                );
            });
            false
        }
    }
}

/// A fixed-length, page-backed secret buffer, locked in RAM when possible.
pub struct SecureBox {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
    locked: bool,
    owner: &'static SecureAllocator,
}

// SAFETY: the box exclusively owns its allocation; `&SecureBox` only gives `&[u8]`.
unsafe impl Send for SecureBox {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for SecureBox {}

impl SecureBox {
    /// Allocates from the global allocator and copies `bytes` in.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut b = SecureAllocator::global().allocate(bytes.len());
        b.as_mut_slice().copy_from_slice(bytes);
        b
    }

    /// The secret bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `layout.size() >= len` initialised bytes owned by `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The secret bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Whether the pages are locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The number of secret bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the box holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Clone for SecureBox {
    fn clone(&self) -> Self {
        let mut b = self.owner.allocate(self.len);
        b.as_mut_slice().copy_from_slice(self.as_slice());
        b
    }
}

impl subtle::ConstantTimeEq for SecureBox {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        // Lengths are public; contents are compared in constant time.
        self.as_slice().ct_eq(other.as_slice())
    }
}

impl PartialEq for SecureBox {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self, other).into()
    }
}

impl Eq for SecureBox {}

impl fmt::Debug for SecureBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for SecureBox {
    fn drop(&mut self) {
        let size = self.layout.size();
        // SAFETY: the whole allocation is owned by `self` and initialised.
        let all = unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), size) };
        all.zeroize();
        if self.locked {
            os::unlock(self.ptr, size);
            self.owner.locked_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        // SAFETY: allocated in `allocate` with exactly this layout; freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

fn page_size() -> usize {
    os::page_size().unwrap_or(4096)
}

#[cfg(unix)]
mod os {
    use core::ptr::NonNull;

    pub(super) fn page_size() -> Option<usize> {
        // SAFETY: sysconf has no preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v).ok().filter(|p| p.is_power_of_two())
    }

    pub(super) fn lock(ptr: NonNull<u8>, size: usize) -> bool {
        // SAFETY: the range is one owned, page-aligned allocation.
        let ok = unsafe { libc::mlock(ptr.as_ptr().cast(), size) } == 0;
        #[cfg(target_os = "linux")]
        if ok {
            // Best effort: keep secrets out of core dumps.
            // SAFETY: as above.
            let _ = unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTDUMP) };
        }
        ok
    }

    pub(super) fn unlock(ptr: NonNull<u8>, size: usize) {
        // Give the pages back to core dumps before the allocator reuses them.
        #[cfg(target_os = "linux")]
        // SAFETY: the range is one owned, page-aligned allocation.
        let _ = unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DODUMP) };
        // SAFETY: the range was locked by `lock` and is still owned.
        let _ = unsafe { libc::munlock(ptr.as_ptr().cast(), size) };
    }
}

#[cfg(not(unix))]
mod os {
    use core::ptr::NonNull;

    pub(super) fn page_size() -> Option<usize> {
        None
    }

    pub(super) fn lock(_: NonNull<u8>, _: usize) -> bool {
        false
    }

    pub(super) fn unlock(_: NonNull<u8>, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(enabled: bool, cap: usize) -> &'static SecureAllocator {
        Box::leak(Box::new(SecureAllocator::new(enabled, cap)))
    }

    #[test]
    fn locks_within_cap_and_releases_on_drop() {
        let a = leaked(true, 1 << 20);
        let mut b = a.allocate(100);
        b.as_mut_slice().copy_from_slice(&[9u8; 100]);
        assert_eq!(b.as_slice(), &[9u8; 100][..]);
        let st = a.stats();
        // Either the OS locked it (accounted) or refused (counted); never both, never neither.
        if b.is_locked() {
            assert_eq!(st.locked_bytes, page_size());
            assert_eq!(st.mlock_failures, 0);
        } else {
            assert_eq!(st.locked_bytes, 0);
            assert_eq!(st.mlock_failures, 1);
        }
        drop(b);
        assert_eq!(a.stats().locked_bytes, 0);
    }

    #[test]
    fn over_cap_falls_back_unlocked_and_counts() {
        let a = leaked(true, 0);
        let b = a.allocate(32);
        assert!(!b.is_locked());
        assert_eq!(a.stats().over_cap, 1);
        assert_eq!(b.as_slice(), &[0u8; 32][..]);
    }

    #[test]
    fn disabled_allocator_never_locks() {
        let a = leaked(false, 1 << 20);
        let b = a.allocate(4096 * 2 + 1);
        assert!(!b.is_locked());
        assert_eq!(b.len(), 8193);
        assert_eq!(
            a.stats(),
            SecureMemoryStats {
                cap_bytes: 1 << 20,
                ..Default::default()
            }
        );
    }

    #[test]
    fn clone_copies_and_debug_hides() {
        let b = SecureBox::from_slice(b"secret");
        let c = b.clone();
        assert_eq!(c.as_slice(), b"secret");
        assert_eq!(c, b);
        assert_ne!(c, SecureBox::from_slice(b"secreT"));
        assert_ne!(c, SecureBox::from_slice(b"secrets"));
        assert_eq!(format!("{c:?}"), "***");
    }
}
