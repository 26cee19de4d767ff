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

    /// The Merkle tree test data of Certificate Transparency's reference implementation
    /// (RFC 6962, whose tree RFC 9162 §2.1 keeps): eight leaves and the root of each prefix.
    #[test]
    fn roots_match_the_certificate_transparency_reference_data() {
        let data = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves: Vec<Hash> = data
            .iter()
            .map(|d| leaf_hash(&hex::decode(d).unwrap()))
            .collect();
        for (n, want) in roots.iter().enumerate() {
            let got = root(&leaves[..=n]);
            assert_eq!(hex::encode(got), *want, "{} leaves", n + 1);
            for m in 0..=n {
                let p = proof(&leaves[..=n], m);
                assert_eq!(root_from_proof(&leaves[m], m, n + 1, &p), Some(got));
            }
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
