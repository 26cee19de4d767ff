//! The bounded store of skipped message keys (Double Ratchet spec §3.2, `MKSKIPPED`).
//!
//! A key is kept for each message that was skipped over when a later one arrived, so the earlier
//! one still decrypts when it comes. At most [`MAX_SKIP_PER_CHAIN`] keys per chain and
//! [`MAX_SKIPPED`] per session are kept; beyond either, the oldest key is evicted (its message
//! then reports [`super::SessionError::Duplicate`]: its key is no longer held).

use std::collections::VecDeque;

use crate::secret::SymmetricKey;

/// Most keys kept (and most a single message may skip) in one chain.
pub const MAX_SKIP_PER_CHAIN: u32 = 1_000;
/// Most keys kept in one session.
pub const MAX_SKIPPED: usize = 2_000;

/// Identifies a receiving chain: the sender's ratchet public key (classical, hybrid) or all
/// zeros for quantum mode's single receiving chain.
pub(crate) type ChainId = [u8; 32];

/// One kept key. The key is boxed so that moving entries (queue growth, removal) moves only a
/// pointer and never leaves a copy of the key behind in freed memory.
pub(crate) struct SkippedKey {
    pub(crate) chain: ChainId,
    pub(crate) n: u32,
    /// The epoch of the message whose arrival skipped this one: the skipped message's epoch is
    /// at most this, so once the epoch window has moved past it the key can never be used.
    pub(crate) max_epoch: u32,
    pub(crate) key: Box<SymmetricKey>,
}

/// Keys in insertion order (oldest first).
#[derive(Default)]
pub(crate) struct SkippedKeys {
    pub(crate) entries: VecDeque<SkippedKey>,
}

impl core::fmt::Debug for SkippedKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SkippedKeys")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl SkippedKeys {
    /// The position of the key for `(chain, n)`.
    pub(crate) fn find(&self, chain: &ChainId, n: u32) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.n == n && &e.chain == chain)
    }

    /// The key at `pos`.
    pub(crate) fn get(&self, pos: usize) -> Option<&SymmetricKey> {
        self.entries.get(pos).map(|e| e.key.as_ref())
    }

    /// Removes the key at `pos` (it has been used).
    pub(crate) fn remove(&mut self, pos: usize) {
        self.entries.remove(pos);
    }

    /// Whether any key of `chain` is held.
    pub(crate) fn has_chain(&self, chain: &ChainId) -> bool {
        self.entries.iter().any(|e| &e.chain == chain)
    }

    /// Adds keys, evicting the oldest of the same chain, then the oldest overall, past the bounds.
    pub(crate) fn extend(&mut self, keys: Vec<SkippedKey>) {
        let mut counts: Vec<(ChainId, usize)> = Vec::new();
        for k in keys {
            let slot = match counts.iter().position(|(c, _)| *c == k.chain) {
                Some(i) => i,
                None => {
                    let n = self.entries.iter().filter(|e| e.chain == k.chain).count();
                    counts.push((k.chain, n));
                    counts.len() - 1
                }
            };
            if counts[slot].1 >= MAX_SKIP_PER_CHAIN as usize
                && let Some(pos) = self.entries.iter().position(|e| e.chain == k.chain)
            {
                self.entries.remove(pos);
                counts[slot].1 -= 1;
            }
            if self.entries.len() >= MAX_SKIPPED
                && let Some(old) = self.entries.pop_front()
                && let Some(c) = counts.iter_mut().find(|(c, _)| *c == old.chain)
            {
                c.1 -= 1;
            }
            counts[slot].1 += 1;
            self.entries.push_back(k);
        }
    }

    /// Drops the keys whose message can only use an epoch older than `oldest` (no longer held).
    pub(crate) fn forget_epochs_before(&mut self, oldest: u32) {
        self.entries.retain(|e| e.max_epoch >= oldest);
    }

    /// Number of keys held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    fn k(chain: u8, n: u32) -> SkippedKey {
        SkippedKey {
            chain: [chain; 32],
            n,
            max_epoch: 0,
            key: Box::new(SecretBytes::new([chain; 32])),
        }
    }

    #[test]
    fn bounds_evict_oldest_per_chain_then_overall() {
        let mut s = SkippedKeys::default();
        s.extend((0..MAX_SKIP_PER_CHAIN + 5).map(|n| k(1, n)).collect());
        assert_eq!(s.len(), MAX_SKIP_PER_CHAIN as usize);
        assert!(s.find(&[1; 32], 4).is_none());
        assert!(s.find(&[1; 32], 5).is_some());
        s.extend((0..MAX_SKIP_PER_CHAIN).map(|n| k(2, n)).collect());
        s.extend((0..10).map(|n| k(3, n)).collect());
        assert_eq!(s.len(), MAX_SKIPPED);
        assert!(s.find(&[1; 32], 14).is_none());
        assert!(s.find(&[1; 32], 15).is_some());
        assert!(s.find(&[3; 32], 9).is_some());
    }

    #[test]
    fn keys_whose_epochs_left_the_window_are_forgotten() {
        let mut s = SkippedKeys::default();
        let mut a = k(1, 0);
        a.max_epoch = 3;
        let mut b = k(1, 1);
        b.max_epoch = 5;
        s.extend(vec![a, b]);
        s.forget_epochs_before(4);
        assert!(s.find(&[1; 32], 0).is_none());
        assert!(s.find(&[1; 32], 1).is_some());
    }
}
