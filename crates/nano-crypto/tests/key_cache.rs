#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `KeyCache` with a `ManualClock`: key pair hits/misses/expiry per mode, derived-key caching, LRU bound, purge, exact stats.

use std::sync::Arc;
use std::time::Duration;

use nano_crypto::kdf::{self, KdfLabel};
use nano_crypto::{CryptoMode, KeyCache, KeyCacheStats, ManualClock, SymmetricKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const TTL: Duration = Duration::from_secs(60);

fn cache(cap: usize) -> (KeyCache<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    (KeyCache::with_clock(cap, TTL, clock.clone()), clock)
}

fn stats(hits: u64, misses: u64, evictions: u64) -> KeyCacheStats {
    KeyCacheStats {
        hits,
        misses,
        evictions,
    }
}

fn expected(label: KdfLabel, ikm: &[u8], info: &[u8]) -> SymmetricKey {
    kdf::derive::<32>(label, b"", ikm, &[info]).unwrap()
}

#[test]
fn keypair_miss_then_hit_then_expiry() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (mut c, clock) = cache(8);
    assert_eq!(c.stats(), KeyCacheStats::default());

    let (first, left) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert_eq!(left, TTL, "a fresh key pair is valid for the whole TTL");
    assert_eq!(first.mode(), CryptoMode::Hybrid);
    assert_eq!(c.stats(), stats(0, 1, 0));

    // Same instant: a hit.
    let (again, left) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(left, TTL);
    assert_eq!(c.stats(), stats(1, 1, 0));

    // The remaining validity shrinks as the clock advances.
    let mut elapsed = Duration::ZERO;
    for step in [
        Duration::from_secs(10),
        Duration::from_secs(30),
        Duration::from_millis(19_999),
    ] {
        clock.advance(step);
        elapsed += step;
        let (kp, left) = c
            .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &kp), "still cached after {elapsed:?}");
        assert_eq!(left, TTL - elapsed);
    }
    assert_eq!(c.stats(), stats(4, 1, 0));

    // 1 ns before the TTL: still a hit, with 1 ns left.
    clock.advance(TTL - elapsed - Duration::from_nanos(1));
    let (kp, left) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &kp));
    assert_eq!(left, Duration::from_nanos(1));
    drop(kp);
    assert_eq!(c.stats(), stats(5, 1, 0));
    assert_eq!(Arc::strong_count(&first), 3, "cache + `first` + `again`");

    // Exactly at the TTL: expired, replaced by a new key pair.
    clock.advance(Duration::from_nanos(1));
    let (fresh, left) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_ne!(first.public_key(), fresh.public_key());
    assert_eq!(fresh.mode(), CryptoMode::Hybrid);
    assert_eq!(left, TTL);
    assert_eq!(c.stats(), stats(5, 2, 1));
    assert_eq!(
        Arc::strong_count(&first),
        2,
        "the cache dropped its reference to the expired key pair"
    );

    // The replacement is served from then on.
    clock.advance(Duration::from_secs(1));
    let (kp, left) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&fresh, &kp));
    assert_eq!(left, TTL - Duration::from_secs(1));
    assert_eq!(c.stats(), stats(6, 2, 1));
}

#[test]
fn modes_are_separate_entries() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (mut c, clock) = cache(8);
    let mut held = Vec::new();
    for mode in CryptoMode::ALL {
        let (kp, left) = c.get_or_generate_keypair(mode, &mut rng).unwrap();
        assert_eq!(kp.mode(), mode);
        assert_eq!(kp.public_key().mode(), mode);
        assert_eq!(left, TTL);
        held.push(kp);
        clock.advance(Duration::from_secs(10));
    }
    assert_eq!(c.stats(), stats(0, 3, 0));
    // Hits for each, in reverse order, each returning its own mode's pair.
    for (i, mode) in CryptoMode::ALL.iter().enumerate().rev() {
        let (kp, left) = c.get_or_generate_keypair(*mode, &mut rng).unwrap();
        assert!(Arc::ptr_eq(&held[i], &kp), "{mode}");
        assert_eq!(kp.mode(), *mode);
        // Created at 10 s * i, now at 30 s.
        assert_eq!(left, TTL - Duration::from_secs(30 - 10 * i as u64));
    }
    assert_eq!(c.stats(), stats(3, 3, 0));
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            assert!(!Arc::ptr_eq(a, b));
        }
    }
    // Advance so only the classical pair (created at t = 0) expires.
    clock.advance(Duration::from_secs(30));
    let (c2, _) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    assert!(!Arc::ptr_eq(&held[0], &c2));
    let (h2, _) = c
        .get_or_generate_keypair(CryptoMode::Hybrid, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&held[1], &h2));
    assert_eq!(c.stats(), stats(4, 4, 1));
}

#[test]
fn symmetric_key_hits_on_same_inputs_and_matches_kdf() {
    let (mut c, clock) = cache(16);
    let k1 = c
        .symmetric_key(KdfLabel::ChannelKey, b"shared secret", b"session 1")
        .unwrap();
    assert_eq!(c.stats(), stats(0, 1, 0));
    assert_eq!(c.symmetric_len(), 1);
    assert_eq!(
        *k1,
        expected(KdfLabel::ChannelKey, b"shared secret", b"session 1")
    );

    clock.advance(Duration::from_secs(59));
    let k2 = c
        .symmetric_key(KdfLabel::ChannelKey, b"shared secret", b"session 1")
        .unwrap();
    assert_eq!(k1, k2);
    assert_eq!(c.stats(), stats(1, 1, 0));
    assert_eq!(c.symmetric_len(), 1);

    // Any differing input is a different entry, with its own correct key.
    let variants: [(KdfLabel, &[u8], &[u8]); 6] = [
        (KdfLabel::EnvelopeKey, b"shared secret", b"session 1"),
        (KdfLabel::KeystoreKey, b"shared secret", b"session 1"),
        (KdfLabel::ChannelKey, b"shared secreT", b"session 1"),
        (KdfLabel::ChannelKey, b"shared secret", b"session 2"),
        (KdfLabel::ChannelKey, b"shared secret", b""),
        (KdfLabel::ChannelKey, b"", b"session 1"),
    ];
    for (n, (label, ikm, info)) in variants.iter().enumerate() {
        let k = c.symmetric_key(*label, ikm, info).unwrap();
        assert_eq!(*k, expected(*label, ikm, info), "variant {n}");
        assert_ne!(*k, *k1, "variant {n}");
        assert_eq!(c.stats(), stats(1, 2 + n as u64, 0), "variant {n}");
    }
    assert_eq!(c.symmetric_len(), 1 + variants.len());
    // And each variant now hits.
    for (n, (label, ikm, info)) in variants.iter().enumerate() {
        let k = c.symmetric_key(*label, ikm, info).unwrap();
        assert_eq!(*k, expected(*label, ikm, info), "variant {n}");
    }
    assert_eq!(c.stats(), stats(1 + variants.len() as u64, 7, 0));
}

#[test]
fn symmetric_key_boundary_between_ikm_and_info_is_unambiguous() {
    let (mut c, _clock) = cache(16);
    let a = c.symmetric_key(KdfLabel::EnvelopeKey, b"ab", b"c").unwrap();
    let b = c.symmetric_key(KdfLabel::EnvelopeKey, b"a", b"bc").unwrap();
    let e = c.symmetric_key(KdfLabel::EnvelopeKey, b"abc", b"").unwrap();
    assert_eq!(c.stats(), stats(0, 3, 0));
    assert_eq!(c.symmetric_len(), 3);
    assert_eq!(*a, expected(KdfLabel::EnvelopeKey, b"ab", b"c"));
    assert_eq!(*b, expected(KdfLabel::EnvelopeKey, b"a", b"bc"));
    assert_eq!(*e, expected(KdfLabel::EnvelopeKey, b"abc", b""));
    assert_ne!(a, b);
    assert_ne!(a, e);
    assert_ne!(b, e);
}

#[test]
fn symmetric_key_expires_after_ttl() {
    let (mut c, clock) = cache(4);
    let k = c
        .symmetric_key(KdfLabel::ChannelKey, b"ikm", b"info")
        .unwrap();
    clock.advance(TTL - Duration::from_nanos(1));
    assert_eq!(
        c.symmetric_key(KdfLabel::ChannelKey, b"ikm", b"info")
            .unwrap(),
        k
    );
    assert_eq!(c.stats(), stats(1, 1, 0));
    clock.advance(Duration::from_nanos(1));
    // Expired: re-derived (same inputs, so the same value), counted as miss + eviction.
    assert_eq!(
        c.symmetric_key(KdfLabel::ChannelKey, b"ikm", b"info")
            .unwrap(),
        k
    );
    assert_eq!(c.stats(), stats(1, 2, 1));
    assert_eq!(c.symmetric_len(), 1);
    // The re-derived entry starts a new lifetime.
    clock.advance(TTL - Duration::from_nanos(1));
    assert_eq!(
        c.symmetric_key(KdfLabel::ChannelKey, b"ikm", b"info")
            .unwrap(),
        k
    );
    assert_eq!(c.stats(), stats(2, 2, 1));
}

fn ikm(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

#[test]
fn symmetric_lru_bound_evicts_least_recently_used() {
    const N: u32 = 4;
    let (mut c, _clock) = cache(N as usize);
    for i in 0..N {
        c.symmetric_key(KdfLabel::ChannelKey, &ikm(i), b"").unwrap();
        assert_eq!(c.symmetric_len(), i as usize + 1);
    }
    assert_eq!(c.stats(), stats(0, u64::from(N), 0));

    // Touch entry 0: now entry 1 is the least recently used.
    c.symmetric_key(KdfLabel::ChannelKey, &ikm(0), b"").unwrap();
    assert_eq!(c.stats(), stats(1, u64::from(N), 0));

    // Insert N+1-th distinct entry: evicts 1.
    c.symmetric_key(KdfLabel::ChannelKey, &ikm(N), b"").unwrap();
    assert_eq!(c.symmetric_len(), N as usize);
    assert_eq!(c.stats(), stats(1, u64::from(N) + 1, 1));

    // 0 (touched), 2, 3 and N survive: all hits, no growth.
    for i in [0, 2, 3, N] {
        let k = c.symmetric_key(KdfLabel::ChannelKey, &ikm(i), b"").unwrap();
        assert_eq!(*k, expected(KdfLabel::ChannelKey, &ikm(i), b""));
    }
    assert_eq!(c.stats(), stats(5, u64::from(N) + 1, 1));
    assert_eq!(c.symmetric_len(), N as usize);

    // 1 was evicted: a miss, which in turn evicts the now least recently used (0).
    c.symmetric_key(KdfLabel::ChannelKey, &ikm(1), b"").unwrap();
    assert_eq!(c.stats(), stats(5, u64::from(N) + 2, 2));
    assert_eq!(c.symmetric_len(), N as usize);
    c.symmetric_key(KdfLabel::ChannelKey, &ikm(2), b"").unwrap();
    assert_eq!(c.stats(), stats(6, u64::from(N) + 2, 2));
    c.symmetric_key(KdfLabel::ChannelKey, &ikm(0), b"").unwrap();
    assert_eq!(c.stats(), stats(6, u64::from(N) + 3, 3));
}

#[test]
fn symmetric_len_never_exceeds_capacity() {
    for cap in [1usize, 2, 5] {
        let (mut c, _clock) = cache(cap);
        for i in 0..20u32 {
            c.symmetric_key(KdfLabel::KeystoreKey, &ikm(i), b"x")
                .unwrap();
            assert!(c.symmetric_len() <= cap);
        }
        assert_eq!(c.symmetric_len(), cap);
        assert_eq!(c.stats(), stats(0, 20, 20 - cap as u64), "capacity {cap}");
        // The last `cap` inserted are exactly the ones kept.
        for i in (20 - cap as u32)..20 {
            c.symmetric_key(KdfLabel::KeystoreKey, &ikm(i), b"x")
                .unwrap();
        }
        assert_eq!(c.stats(), stats(cap as u64, 20, 20 - cap as u64));
    }
    // Capacity 0 is treated as 1.
    let (mut c, _clock) = cache(0);
    c.symmetric_key(KdfLabel::KeystoreKey, b"a", b"").unwrap();
    c.symmetric_key(KdfLabel::KeystoreKey, b"a", b"").unwrap();
    assert_eq!(c.symmetric_len(), 1);
    assert_eq!(c.stats(), stats(1, 1, 0));
    c.symmetric_key(KdfLabel::KeystoreKey, b"b", b"").unwrap();
    assert_eq!(c.symmetric_len(), 1);
    assert_eq!(c.stats(), stats(1, 2, 1));
}

#[test]
fn purge_expired_removes_only_stale_entries() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (mut c, clock) = cache(16);

    // t = 0: classical pair and two derived keys.
    let (old_kp, _) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    c.symmetric_key(KdfLabel::ChannelKey, b"old-1", b"")
        .unwrap();
    c.symmetric_key(KdfLabel::ChannelKey, b"old-2", b"")
        .unwrap();
    // t = 30 s: quantum pair and one derived key.
    clock.advance(Duration::from_secs(30));
    let (young_kp, _) = c
        .get_or_generate_keypair(CryptoMode::Quantum, &mut rng)
        .unwrap();
    c.symmetric_key(KdfLabel::ChannelKey, b"young", b"")
        .unwrap();
    assert_eq!(c.stats(), stats(0, 5, 0));
    assert_eq!(c.symmetric_len(), 3);

    // t = 59.999 s: nothing is stale yet.
    clock.advance(Duration::from_millis(29_999));
    c.purge_expired();
    assert_eq!(c.stats(), stats(0, 5, 0));
    assert_eq!(c.symmetric_len(), 3);

    // t = 60 s: the t = 0 entries are exactly at their TTL.
    clock.advance(Duration::from_millis(1));
    c.purge_expired();
    assert_eq!(c.symmetric_len(), 1);
    assert_eq!(
        c.stats(),
        stats(0, 5, 3),
        "one key pair and two derived keys"
    );
    assert_eq!(Arc::strong_count(&old_kp), 1, "cache no longer holds it");
    assert_eq!(Arc::strong_count(&young_kp), 2);

    // Purging again is a no-op.
    c.purge_expired();
    assert_eq!(c.stats(), stats(0, 5, 3));

    // The young entries still hit; the purged ones miss without another eviction.
    let (kp, left) = c
        .get_or_generate_keypair(CryptoMode::Quantum, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&kp, &young_kp));
    assert_eq!(left, Duration::from_secs(30));
    c.symmetric_key(KdfLabel::ChannelKey, b"young", b"")
        .unwrap();
    assert_eq!(c.stats(), stats(2, 5, 3));
    let (kp, left) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    assert!(!Arc::ptr_eq(&kp, &old_kp));
    assert_eq!(left, TTL);
    c.symmetric_key(KdfLabel::ChannelKey, b"old-1", b"")
        .unwrap();
    assert_eq!(c.stats(), stats(2, 7, 3));
    assert_eq!(c.symmetric_len(), 2);

    // Far in the future everything goes.
    clock.advance(Duration::from_secs(3_600));
    c.purge_expired();
    assert_eq!(c.symmetric_len(), 0);
    assert_eq!(c.stats(), stats(2, 7, 3 + 2 + 2));
}

#[test]
fn zero_ttl_never_hits() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let clock = ManualClock::new();
    let mut c = KeyCache::with_clock(4, Duration::ZERO, clock);
    let (a, left) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    assert_eq!(left, Duration::ZERO);
    let (b, _) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    c.symmetric_key(KdfLabel::ChannelKey, b"x", b"").unwrap();
    c.symmetric_key(KdfLabel::ChannelKey, b"x", b"").unwrap();
    assert_eq!(c.stats(), stats(0, 4, 2));
}

#[test]
fn generated_key_pairs_are_deterministic_in_the_rng() {
    // Two caches fed the same seeded RNG produce the same key pairs: the cache adds no
    // randomness of its own and consumes the RNG only on a miss.
    let run = || {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (mut c, clock) = cache(4);
        let mut pks = Vec::new();
        for _ in 0..3 {
            for mode in CryptoMode::ALL {
                let (kp, _) = c.get_or_generate_keypair(mode, &mut rng).unwrap();
                pks.push(kp.public_key());
            }
            clock.advance(TTL);
        }
        (pks, c.stats())
    };
    let (a, sa) = run();
    let (b, sb) = run();
    assert_eq!(a, b);
    assert_eq!(sa, stats(0, 9, 6));
    assert_eq!(sa, sb);
    // Every generation produced a distinct key.
    for (i, x) in a.iter().enumerate() {
        for y in &a[i + 1..] {
            assert_ne!(x, y);
        }
    }
}

#[test]
fn cached_kem_key_pair_works_end_to_end() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (mut c, _clock) = cache(4);
    for mode in CryptoMode::ALL {
        let (kp, _) = c.get_or_generate_keypair(mode, &mut rng).unwrap();
        let (ct, ss) = kp.public_key().encapsulate(&mut rng).unwrap();
        assert_eq!(kp.decapsulate(&ct).unwrap(), ss, "{mode}");
    }
}

#[test]
fn monotonic_clock_cache_hits_within_a_long_ttl() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut c = KeyCache::new(2, Duration::from_secs(24 * 3600));
    let (a, _) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    let (b, left) = c
        .get_or_generate_keypair(CryptoMode::Classical, &mut rng)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(left <= Duration::from_secs(24 * 3600));
    assert_eq!(c.stats(), stats(1, 1, 0));
}
