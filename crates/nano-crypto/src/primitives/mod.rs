//! Thin, typed wrappers over the vetted primitive implementations.
//!
//! | primitive | implementation | why |
//! |---|---|---|
//! | X25519, Ed25519 sign, AEADs | aws-lc-rs | fastest measured here; FIPS-validated lineage |
//! | Ed25519 verify (single + batch) | ed25519-zebra | cofactored: single and batch agree exactly |
//! | ML-KEM-768/1024 | libcrux-ml-kem | formally verified; deterministic API for KATs |
//! | ML-DSA-65/87 | libcrux-ml-dsa | fastest ML-DSA-65 here; deterministic API for KATs |
//! | SHA3/SHAKE, HKDF | RustCrypto sha3, hkdf | fastest HKDF; SHAKE for X-Wing key expansion |
//!
//! Deterministic entry points (`*_derand`, `from_seed`) exist for known-answer tests and for
//! re-deriving stored keys: their randomness inputs must be uniform and never reused.

pub mod ed25519;
pub mod mldsa;
pub mod mlkem;
pub mod x25519;
pub mod xwing;
