//! The Merkle tree over a batch of one-time prekeys (RFC 9162 §2.1): the signed-prekeys record
//! signs its root once, and each one-time prekey travels with its inclusion proof instead of a
//! signature of its own.
//!
//! ```text
//! leaf hash = SHA-256(0x00 ‖ one-time prekey)                      (RFC 9162 §2.1.1)
//! node hash = SHA-256(0x01 ‖ left ‖ right)
//! MTH of n > 1 leaves = node(MTH(first k), MTH(rest)), k the largest power of two < n
//! inclusion proof of leaf m = RFC 9162 §2.1.3.1 PATH(m, D[n]): nearest sibling first
//! ```
//!
//! A proof's length follows from `m` and `n` alone ([`proof_len`]), so it is never encoded.

use sha2::{Digest, Sha256};

/// One hash of the tree, 32 bytes.
pub(crate) type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ leaf)`.
pub(crate) fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(leaf)
        .finalize()
        .into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root over leaf hashes `leaves` (at least one).
pub(crate) fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => [0; 32],
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `m` among `leaves` (`m < leaves.len()`), nearest sibling first.
pub(crate) fn proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    let mut out = Vec::with_capacity(proof_len(m, leaves.len()));
    proof_into(leaves, m, &mut out);
    out
}

fn proof_into(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if m < k {
        proof_into(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        proof_into(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// How many hashes the inclusion proof of leaf `m` in a tree of `n` leaves has (0 if `m ≥ n`).
pub(crate) fn proof_len(m: usize, n: usize) -> usize {
    if n <= 1 || m >= n {
        return 0;
    }
    let k = split(n);
    1 + if m < k {
        proof_len(m, k)
    } else {
        proof_len(m - k, n - k)
    }
}

/// The root that leaf hash `leaf` at index `m` of `n` leaves and `proof` imply; `None` when the
/// proof has the wrong length for `m` and `n` or `m ≥ n`.
pub(crate) fn root_from_proof(leaf: &Hash, m: usize, n: usize, proof: &[Hash]) -> Option<Hash> {
    if m >= n {
        return None;
    }
    if n == 1 {
        return proof.is_empty().then_some(*leaf);
    }
    let (top, rest) = proof.split_last()?;
    let k = split(n);
    Some(if m < k {
        node_hash(&root_from_proof(leaf, m, k, rest)?, top)
    } else {
        node_hash(top, &root_from_proof(leaf, m - k, n - k, rest)?)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u32).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_proof_of_every_size_rebuilds_the_root_and_nothing_else_does() {
        for n in 1..=40 {
            let l = leaves(n);
            let r = root(&l);
            for m in 0..n {
                let p = proof(&l, m);
                assert_eq!(p.len(), proof_len(m, n), "n {n} m {m}");
                assert_eq!(root_from_proof(&l[m], m, n, &p), Some(r), "n {n} m {m}");
                // Another index, another leaf, a shortened or lengthened proof: not the root.
                if n > 1 {
                    let other = (m + 1) % n;
                    assert_ne!(root_from_proof(&l[m], other, n, &p), Some(r));
                    assert_ne!(root_from_proof(&l[other], m, n, &p), Some(r));
                    assert_eq!(root_from_proof(&l[m], m, n, &p[1..]), None);
                }
                let mut longer = p.clone();
                longer.push([0; 32]);
                assert_eq!(root_from_proof(&l[m], m, n, &longer), None);
            }
            assert_eq!(root_from_proof(&l[0], n, n, &[]), None);
        }
    }

    #[test]
    fn matches_rfc_9162_for_three_leaves() {
        // MTH({d0, d1, d2}) = node(node(h0, h1), h2): the split is the largest power of two < 3.
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(proof(&l, 2), vec![node_hash(&l[0], &l[1])]);
        assert_eq!(proof(&l, 0), vec![l[1], l[2]]);
        assert_eq!(proof_len(0, 25), 5);
        assert_eq!(proof_len(24, 25), 2);
    }
}
