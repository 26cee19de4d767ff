//! Sessions: handshake in every mode, tampering, ordering, replay, bounds, state round trips,
//! simultaneous initiation, long conversations and every single-bit flip of a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use nano_crypto::session::{
    MAX_SKIP_PER_CHAIN, OneTimeBatch, OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session,
    SessionError, SignedPrekeySecrets, SignedPrekeys,
};
use nano_crypto::{AeadId, CryptoMode, Identity};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Alice, Bob and Carol, holding keys for every mode.
fn people() -> &'static [Identity; 3] {
    static P: OnceLock<[Identity; 3]> = OnceLock::new();
    P.get_or_init(|| {
        let mut r = rng(7);
        core::array::from_fn(|_| Identity::generate(CryptoMode::Classical, &mut r).unwrap())
    })
}

fn prekeys(
    _owner: &Identity,
    mode: CryptoMode,
    one_time: u32,
    r: &mut ChaCha20Rng,
) -> PrekeySecrets {
    let signed = SignedPrekeySecrets::generate(mode, 1, r).unwrap();
    let batch = OneTimePrekeys::generate(mode, 100, one_time, r).unwrap();
    PrekeySecrets::new(signed, batch).unwrap()
}

/// A bundle of `who`'s prekeys `p` as a relay serves it.
fn bundle(who: &Identity, p: &PrekeySecrets, one_time: bool) -> PrekeyBundle {
    p.bundle(who, one_time, &mut rng(99)).unwrap()
}

struct Pair {
    a: Session,
    b: Session,
    r: ChaCha20Rng,
}

impl Pair {
    fn new(mode: CryptoMode, one_time: bool, seed: u64) -> Self {
        let [alice, bob, _] = people();
        let mut r = rng(seed);
        let mut secrets = prekeys(bob, mode, 2, &mut r);
        let b = bundle(bob, &secrets, one_time);
        let (a, hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &b,
            AeadId::ChaCha20Poly1305,
            b"hello",
            &mut r,
        )
        .unwrap();
        let got = Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap();
        assert_eq!(got.plaintext, b"hello");
        assert_eq!(got.session.id(), a.id());
        assert_eq!(got.one_time_prekey.is_some(), one_time);
        Self {
            a,
            b: got.session,
            r,
        }
    }

    fn a_to_b(&mut self, pt: &[u8]) -> Vec<u8> {
        self.a.encrypt(pt, &mut self.r).unwrap()
    }

    fn b_to_a(&mut self, pt: &[u8]) -> Vec<u8> {
        self.b.encrypt(pt, &mut self.r).unwrap()
    }

    fn a_reads(&mut self, m: &[u8]) -> Result<Vec<u8>, SessionError> {
        self.a.decrypt(m, &mut self.r)
    }

    fn b_reads(&mut self, m: &[u8]) -> Result<Vec<u8>, SessionError> {
        self.b.decrypt(m, &mut self.r)
    }
}

#[test]
fn handshake_and_ping_pong_in_every_mode_with_and_without_one_time_prekeys() {
    for mode in CryptoMode::ALL {
        for one_time in [true, false] {
            let mut p = Pair::new(mode, one_time, 1);
            for i in 0..6u8 {
                let m = p.a_to_b(&[i; 100]);
                assert_eq!(p.b_reads(&m).unwrap(), [i; 100], "{mode} a→b {i}");
                let m = p.b_to_a(&[i; 7]);
                assert_eq!(p.a_reads(&m).unwrap(), [i; 7], "{mode} b→a {i}");
            }
            // A steady-state message adds exactly the documented overhead.
            let m = p.a_to_b(&[0; 1024]);
            assert_eq!(m.len() - 1024, Session::steady_overhead(mode), "{mode}");
            assert!(Session::steady_overhead(mode) <= 64);
        }
    }
}

#[test]
fn a_replayed_handshake_that_used_a_one_time_prekey_is_refused() {
    let [alice, bob, _] = people();
    let mut r = rng(2);
    for mode in CryptoMode::ALL {
        let mut secrets = prekeys(bob, mode, 1, &mut r);
        let b = bundle(bob, &secrets, true);
        let (_, hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &b,
            AeadId::Aes256Gcm,
            b"x",
            &mut r,
        )
        .unwrap();
        assert_eq!(secrets.one_time().len(), 1);
        Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap();
        assert_eq!(secrets.one_time().len(), 0, "the used secret is deleted");
        let again = Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r);
        assert_eq!(
            again.unwrap_err(),
            SessionError::UnknownPrekey {
                kind: "one-time",
                id: 100
            }
        );
    }
}

#[test]
fn handshakes_to_the_wrong_people_or_modes_are_refused() {
    let [alice, bob, carol] = people();
    let mut r = rng(3);
    let mut secrets = prekeys(bob, CryptoMode::Hybrid, 1, &mut r);
    let b = bundle(bob, &secrets, true);
    let (_, hs) = Session::initiate(
        alice,
        bob.public_bundle(),
        &b,
        AeadId::ChaCha20Poly1305,
        b"x",
        &mut r,
    )
    .unwrap();
    // Addressed to Bob, opened by Carol; claimed by Alice, checked against Carol.
    let mut carol_secrets = prekeys(carol, CryptoMode::Hybrid, 1, &mut r);
    assert_eq!(
        Session::respond(
            carol,
            &mut carol_secrets,
            alice.public_bundle(),
            &hs,
            &mut r
        )
        .unwrap_err(),
        SessionError::WrongIdentity("responder")
    );
    assert_eq!(
        Session::respond(bob, &mut secrets, carol.public_bundle(), &hs, &mut r).unwrap_err(),
        SessionError::WrongIdentity("initiator")
    );
    // Bob's quantum prekeys cannot answer a hybrid handshake.
    let mut quantum = prekeys(bob, CryptoMode::Quantum, 1, &mut r);
    assert_eq!(
        Session::respond(bob, &mut quantum, alice.public_bundle(), &hs, &mut r).unwrap_err(),
        SessionError::ModeMismatch {
            expected: CryptoMode::Quantum,
            got: CryptoMode::Hybrid
        }
    );
    // A prekey bundle signed by someone other than the peer.
    let carols = bundle(carol, &carol_secrets, true);
    assert_eq!(
        Session::initiate(
            alice,
            bob.public_bundle(),
            &carols,
            AeadId::Aes256Gcm,
            b"x",
            &mut r
        )
        .unwrap_err(),
        SessionError::BadPrekeySignature
    );
    // An identity without classical keys cannot use a classical bundle.
    let hybrid_only = Identity::generate(CryptoMode::Hybrid, &mut r).unwrap();
    let classical = bundle(bob, &prekeys(bob, CryptoMode::Classical, 1, &mut r), true);
    assert!(matches!(
        Session::initiate(
            &hybrid_only,
            bob.public_bundle(),
            &classical,
            AeadId::Aes256Gcm,
            b"x",
            &mut r
        )
        .unwrap_err(),
        SessionError::ModeMismatch { .. }
    ));
    // Mixing a one-time prekey of another mode into a bundle.
    let q = prekeys(bob, CryptoMode::Quantum, 1, &mut r);
    let ot = q.one_time().batch().unwrap().inclusions().next();
    let record = secrets
        .current()
        .unwrap()
        .certify(bob, None, &mut r)
        .unwrap();
    assert!(matches!(
        PrekeyBundle::new(record, ot),
        Err(SessionError::ModeMismatch { .. })
    ));
}

/// Byte ranges of the handshake fields, from the layout in `handshake.rs`.
fn handshake_fields(
    mode: CryptoMode,
    one_time: bool,
) -> Vec<(&'static str, core::ops::Range<usize>)> {
    let mut at = 3 + 32 + 32 + 4 + 1;
    if one_time {
        at += 4;
    }
    let mut fields = Vec::new();
    if mode != CryptoMode::Quantum {
        fields.push(("ek", at..at + 32));
        at += 32;
    }
    if one_time || mode != CryptoMode::Classical {
        let ct = nano_crypto::kem::ciphertext_len(mode);
        fields.push(("kem ciphertext", at..at + ct));
        at += ct;
    }
    let sig = nano_crypto::sign::signature_len(mode);
    fields.push(("signature", at..at + sig));
    fields
}

#[test]
fn a_flipped_bit_in_any_handshake_field_is_rejected() {
    let [alice, bob, _] = people();
    let mut r = rng(4);
    for mode in CryptoMode::ALL {
        let mut secrets = prekeys(bob, mode, 1, &mut r);
        let b = bundle(bob, &secrets, true);
        let (_, hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &b,
            AeadId::ChaCha20Poly1305,
            b"x",
            &mut r,
        )
        .unwrap();
        for (name, range) in handshake_fields(mode, true) {
            for pos in [range.start, range.start + range.len() / 2, range.end - 1] {
                let mut bad = hs.clone();
                bad[pos] ^= 0x01;
                let err = Session::respond(bob, &mut secrets, alice.public_bundle(), &bad, &mut r)
                    .unwrap_err();
                assert!(
                    matches!(
                        err,
                        SessionError::BadTranscriptSignature | SessionError::Malformed(_)
                    ),
                    "{mode} {name} byte {pos}: {err:?}"
                );
            }
        }
        assert_eq!(secrets.one_time().len(), 1, "nothing consumed by rejects");
        Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap();
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_prekey_bundle_is_rejected() {
    let [alice, bob, _] = people();
    let mut r = rng(5);
    for mode in CryptoMode::ALL {
        let secrets = prekeys(bob, mode, 5, &mut r);
        for one_time in [true, false] {
            let b = bundle(bob, &secrets, one_time);
            let good = b.to_bytes();
            assert_eq!(PrekeyBundle::from_bytes(&good).unwrap(), b);
            let sig = nano_crypto::sign::signature_len(mode);
            // version ‖ mode ‖ flag ‖ signed prekeys ‖ [one-time prekey ‖ index ‖ proof]
            let record_end = 3 + b.signed().to_bytes().len();
            let fields = [
                3 + 1,
                record_end - sig - 34,
                record_end - sig - 32,
                record_end - sig,
                record_end - 1,
                good.len() - 1,
            ];
            for pos in (3..good.len()).step_by(97).chain(fields) {
                let mut bad = good.clone();
                bad[pos] ^= 0x01;
                let Ok(decoded) = PrekeyBundle::from_bytes(&bad) else {
                    continue;
                };
                assert_eq!(
                    decoded.verify(bob.public_bundle()),
                    Err(SessionError::BadPrekeySignature),
                    "{mode} one-time {one_time} byte {pos}"
                );
                let err = Session::initiate(
                    alice,
                    bob.public_bundle(),
                    &decoded,
                    AeadId::Aes256Gcm,
                    b"x",
                    &mut r,
                )
                .unwrap_err();
                assert_eq!(err, SessionError::BadPrekeySignature, "{mode} byte {pos}");
            }
            for cut in [0, 1, 7, good.len() - 1] {
                assert!(PrekeyBundle::from_bytes(&good[..cut]).is_err());
            }
        }
    }
}

#[test]
fn a_one_time_prekey_is_accepted_only_under_the_root_of_its_own_batch() {
    let [alice, bob, _] = people();
    let mut r = rng(15);
    for mode in CryptoMode::ALL {
        let signed = SignedPrekeySecrets::generate(mode, 1, &mut r).unwrap();
        let first = OneTimePrekeys::generate(mode, 10, 3, &mut r)
            .unwrap()
            .batch()
            .unwrap();
        let other = OneTimePrekeys::generate(mode, 20, 3, &mut r)
            .unwrap()
            .batch()
            .unwrap();
        let record = signed.certify(bob, Some(&first), &mut r).unwrap();
        assert!(record.covers(&first) && !record.covers(&other));
        assert_eq!(record.one_time_count(), 3);
        for (i, inclusion) in first.inclusions().enumerate() {
            assert_eq!(usize::from(inclusion.index()), i);
            let b = PrekeyBundle::new(record.clone(), Some(inclusion)).unwrap();
            assert_eq!(b.verify(bob.public_bundle()), Ok(()));
            // Compact on the wire: the last-resort key is replaced by its digest.
            assert!(b.signed().last_resort().is_none());
        }
        // A one-time prekey of another batch (a valid proof for another root).
        let foreign = other.inclusions().nth(1).unwrap();
        let b = PrekeyBundle::new(record.clone(), Some(foreign)).unwrap();
        assert_eq!(
            b.verify(bob.public_bundle()),
            Err(SessionError::BadPrekeySignature)
        );
        assert_eq!(
            Session::initiate(
                alice,
                bob.public_bundle(),
                &b,
                AeadId::Aes256Gcm,
                b"x",
                &mut r
            )
            .unwrap_err(),
            SessionError::BadPrekeySignature
        );
        // A record certifying no batch serves no one-time prekey.
        let bare = signed.certify(bob, None, &mut r).unwrap();
        assert_eq!(bare.one_time_count(), 0);
        assert_eq!(bare.one_time_root(), &[0; 32]);
        assert!(matches!(
            PrekeyBundle::new(bare.clone(), first.inclusions().next()),
            Err(SessionError::Malformed(_))
        ));
        // A count of 0 with a root other than zeros does not decode.
        let mut bytes = bare.to_bytes();
        let root_at = bytes.len() - nano_crypto::sign::signature_len(mode) - 32;
        bytes[root_at] = 1;
        assert!(matches!(
            SignedPrekeys::from_bytes(&bytes),
            Err(SessionError::Malformed(_))
        ));
        // A record signed by someone else.
        let forged = signed.certify(alice, Some(&first), &mut r).unwrap();
        assert_eq!(
            forged.verify(bob.public_bundle()),
            Err(SessionError::BadPrekeySignature)
        );
    }
}

#[test]
fn one_time_batches_refuse_disorder_mixed_modes_and_emptiness() {
    let mut r = rng(16);
    let a = OneTimePrekeys::generate(CryptoMode::Classical, 5, 2, &mut r).unwrap();
    let mut keys: Vec<_> = a.publics().cloned().collect();
    keys.reverse();
    assert!(matches!(
        OneTimeBatch::new(keys),
        Err(SessionError::Malformed(_))
    ));
    let mut twice: Vec<_> = a.publics().cloned().collect();
    twice.push(twice[1].clone());
    assert!(matches!(
        OneTimeBatch::new(twice),
        Err(SessionError::Malformed(_))
    ));
    assert!(matches!(
        OneTimeBatch::new(Vec::new()),
        Err(SessionError::Malformed(_))
    ));
    let h = OneTimePrekeys::generate(CryptoMode::Hybrid, 9, 1, &mut r).unwrap();
    let mixed: Vec<_> = a.publics().chain(h.publics()).cloned().collect();
    assert!(matches!(
        OneTimeBatch::new(mixed),
        Err(SessionError::ModeMismatch { .. })
    ));
    // A signed-prekeys record of one mode does not certify a batch of another.
    let signed = SignedPrekeySecrets::generate(CryptoMode::Classical, 1, &mut r).unwrap();
    assert!(matches!(
        signed.certify(&people()[1], Some(&h.batch().unwrap()), &mut r),
        Err(SessionError::ModeMismatch { .. })
    ));
}

#[test]
fn a_stripped_or_swapped_hybrid_signature_half_is_rejected() {
    let [alice, bob, _] = people();
    let mut r = rng(6);
    let mode = CryptoMode::Hybrid;
    let mut secrets = prekeys(bob, mode, 2, &mut r);
    let b = bundle(bob, &secrets, true);
    let (_, hs1) = Session::initiate(
        alice,
        bob.public_bundle(),
        &b,
        AeadId::Aes256Gcm,
        b"1",
        &mut r,
    )
    .unwrap();
    let (_, hs2) = Session::initiate(
        alice,
        bob.public_bundle(),
        &b,
        AeadId::Aes256Gcm,
        b"2",
        &mut r,
    )
    .unwrap();
    let sig = handshake_fields(mode, true).pop().unwrap().1;
    let mldsa = sig.start..sig.end - 64;
    let ed = sig.end - 64..sig.end;
    for (name, half) in [("ML-DSA", mldsa), ("Ed25519", ed.clone())] {
        let mut swapped = hs1.clone();
        swapped[half.clone()].copy_from_slice(&hs2[half.clone()]);
        let mut zeroed = hs1.clone();
        zeroed[half.clone()].fill(0);
        for bad in [swapped, zeroed] {
            assert_eq!(
                Session::respond(bob, &mut secrets, alice.public_bundle(), &bad, &mut r)
                    .unwrap_err(),
                SessionError::BadTranscriptSignature,
                "{name}"
            );
        }
    }
    // Stripping a half changes the length: the signature no longer parses as one.
    let mut stripped = hs1[..ed.start].to_vec();
    stripped.extend_from_slice(&hs1[ed.end..]);
    assert!(Session::respond(bob, &mut secrets, alice.public_bundle(), &stripped, &mut r).is_err());
}

#[test]
fn out_of_order_delivery_within_bounds_decrypts_in_every_mode() {
    for mode in CryptoMode::ALL {
        let mut p = Pair::new(mode, true, 8);
        // Two chains on each side, delivered in reverse.
        let mut to_b = Vec::new();
        for i in 0..20u8 {
            to_b.push((i, p.a_to_b(&[i])));
        }
        let reply = p.b_to_a(b"r");
        // Bob's reply is read after Alice starts her next chain, interleaved.
        assert_eq!(p.a_reads(&reply).unwrap(), b"r");
        for i in 20..40u8 {
            to_b.push((i, p.a_to_b(&[i])));
        }
        to_b.reverse();
        for (i, m) in &to_b {
            assert_eq!(p.b_reads(m).unwrap(), [*i], "{mode} message {i}");
        }
        assert_eq!(p.b.skipped_keys(), 0, "{mode}: every skipped key used");
        for (_, m) in &to_b {
            assert_eq!(p.b_reads(m).unwrap_err(), SessionError::Duplicate, "{mode}");
        }
    }
}

#[test]
fn a_jump_past_the_bounds_is_too_far_ahead_and_changes_nothing() {
    for mode in CryptoMode::ALL {
        let mut p = Pair::new(mode, false, 9);
        let mut last = Vec::new();
        for _ in 0..=MAX_SKIP_PER_CHAIN + 1 {
            last = p.a_to_b(b"m");
        }
        let before = p.b.to_bytes();
        assert!(matches!(
            p.b_reads(&last).unwrap_err(),
            SessionError::TooFarAhead { .. }
        ));
        assert_eq!(*p.b.to_bytes(), *before);
        // Exactly at the bound still works.
        let mut q = Pair::new(mode, false, 10);
        let mut at = Vec::new();
        for _ in 0..=MAX_SKIP_PER_CHAIN {
            at = q.a_to_b(b"m");
        }
        assert_eq!(q.b_reads(&at).unwrap(), b"m");
        assert_eq!(q.b.skipped_keys(), MAX_SKIP_PER_CHAIN as usize);
    }
}

#[test]
fn state_round_trips_mid_conversation_and_corrupt_state_is_an_error() {
    for mode in CryptoMode::ALL {
        let mut p = Pair::new(mode, true, 11);
        let mut held = Vec::new();
        for i in 0..150u32 {
            let m = p.a_to_b(&i.to_be_bytes());
            if i % 3 == 0 {
                held.push((i, m));
            } else {
                p.b_reads(&m).unwrap();
            }
            if i % 10 == 0 {
                let m = p.b_to_a(b"ack");
                p.a_reads(&m).unwrap();
            }
        }
        let bytes = p.b.to_bytes();
        let mut b2 = Session::from_bytes(&bytes).unwrap();
        assert_eq!(*b2.to_bytes(), *bytes, "{mode}: encoding is canonical");
        assert_eq!(b2.id(), p.b.id());
        for (i, m) in &held {
            assert_eq!(b2.decrypt(m, &mut p.r).unwrap(), i.to_be_bytes());
        }
        let m = b2.encrypt(b"after restore", &mut p.r).unwrap();
        assert_eq!(p.a_reads(&m).unwrap(), b"after restore");
        for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Session::from_bytes(&bytes[..cut]).is_err(),
                "{mode} cut {cut}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(Session::from_bytes(&long).is_err());
        let mut v = bytes.to_vec();
        v[0] = 9;
        assert!(matches!(
            Session::from_bytes(&v),
            Err(SessionError::Malformed(_))
        ));
        let dbg = format!("{:?}", p.b);
        assert!(dbg.contains("Session") && !dbg.contains("key:"), "{dbg}");
    }
}

#[test]
fn simultaneous_initiation_converges_and_both_first_messages_decrypt() {
    let [alice, bob, _] = people();
    for mode in CryptoMode::ALL {
        let mut r = rng(12);
        let mut a_secrets = prekeys(alice, mode, 1, &mut r);
        let mut b_secrets = prekeys(bob, mode, 1, &mut r);
        let (a_init, a_hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &bundle(bob, &b_secrets, true),
            AeadId::Aes256Gcm,
            b"from alice",
            &mut r,
        )
        .unwrap();
        let (b_init, b_hs) = Session::initiate(
            bob,
            alice.public_bundle(),
            &bundle(alice, &a_secrets, true),
            AeadId::ChaCha20Poly1305,
            b"from bob",
            &mut r,
        )
        .unwrap();
        let at_bob =
            Session::respond(bob, &mut b_secrets, alice.public_bundle(), &a_hs, &mut r).unwrap();
        let at_alice =
            Session::respond(alice, &mut a_secrets, bob.public_bundle(), &b_hs, &mut r).unwrap();
        assert_eq!(at_bob.plaintext, b"from alice");
        assert_eq!(at_alice.plaintext, b"from bob");
        let (mut a, _) = a_init.converge(at_alice.session);
        let (mut b, _) = b_init.converge(at_bob.session);
        assert_eq!(a.id(), b.id(), "{mode}: one winner");
        assert_ne!(a.is_initiator(), b.is_initiator());
        for i in 0..3u8 {
            let m = a.encrypt(&[i], &mut r).unwrap();
            assert_eq!(b.decrypt(&m, &mut r).unwrap(), [i]);
            let m = b.encrypt(&[i + 10], &mut r).unwrap();
            assert_eq!(a.decrypt(&m, &mut r).unwrap(), [i + 10]);
        }
    }
}

/// 10,000 messages with random direction changes and random reordering within bounds.
#[test]
fn long_conversations_decrypt_completely_and_the_kem_epoch_advances() {
    for (k, mode) in CryptoMode::ALL.into_iter().enumerate() {
        let mut p = Pair::new(mode, true, 13);
        let mut pick = rng(100 + k as u64);
        let mut in_flight: [Vec<(u32, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
        let mut delivered = 0u32;
        let mut sent = 0u32;
        let mut a_turn = true;
        while sent < 10_000 {
            let burst = 1 + pick.next_u32() % 12;
            for _ in 0..burst {
                let m = if a_turn {
                    p.a_to_b(&sent.to_be_bytes())
                } else {
                    p.b_to_a(&sent.to_be_bytes())
                };
                in_flight[usize::from(!a_turn)].push((sent, m));
                sent += 1;
            }
            // Deliver a random part of what is in flight, in random order.
            for (side, q) in in_flight.iter_mut().enumerate() {
                let take = pick.next_u32() as usize % (q.len() + 1);
                for _ in 0..take {
                    let i = pick.next_u32() as usize % q.len();
                    let (n, m) = q.swap_remove(i);
                    let got = if side == 0 {
                        p.b_reads(&m)
                    } else {
                        p.a_reads(&m)
                    };
                    assert_eq!(got.unwrap(), n.to_be_bytes(), "{mode} message {n}");
                    delivered += 1;
                }
            }
            a_turn = pick.next_u32().is_multiple_of(2);
        }
        for (side, q) in in_flight.iter_mut().enumerate() {
            for (n, m) in std::mem::take(q) {
                let got = if side == 0 {
                    p.b_reads(&m)
                } else {
                    p.a_reads(&m)
                };
                assert_eq!(got.unwrap(), n.to_be_bytes(), "{mode} late {n}");
                delivered += 1;
            }
        }
        assert_eq!(delivered, sent);
        let epochs = p.a.epoch().max(p.b.epoch());
        match mode {
            CryptoMode::Classical => assert_eq!(epochs, 0),
            // An epoch needs one full encapsulation key and one ciphertext in chunks.
            CryptoMode::Hybrid => assert!(epochs >= 10, "hybrid epochs {epochs}"),
            CryptoMode::Quantum => assert!(epochs >= 30, "quantum epochs {epochs}"),
        }
        eprintln!("{mode}: {epochs} KEM epochs over 10,000 messages");
    }
}

fn steady_message(mode: CryptoMode) -> (Pair, Vec<u8>) {
    let mut p = Pair::new(mode, true, 14);
    for _ in 0..3 {
        let m = p.a_to_b(b"warm");
        p.b_reads(&m).unwrap();
        let m = p.b_to_a(b"warm");
        p.a_reads(&m).unwrap();
    }
    let m = p.a_to_b(b"the message under test");
    (p, m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single-bit flip of a steady-state message is an error (never a panic), and the
    /// session is unchanged: the original still decrypts afterwards.
    #[test]
    fn every_single_bit_flip_is_an_error(mode_i in 0usize..3, bit in 0usize..(8 * 200)) {
        let mode = CryptoMode::ALL[mode_i];
        let (mut p, m) = steady_message(mode);
        let bit = bit % (8 * m.len());
        let mut bad = m.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let before = p.b.to_bytes();
        prop_assert!(p.b_reads(&bad).is_err());
        prop_assert_eq!(&*p.b.to_bytes(), &*before);
        prop_assert_eq!(p.b_reads(&m).unwrap(), b"the message under test".to_vec());
    }

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (mut p, _) = steady_message(CryptoMode::Hybrid);
        let _ = p.b_reads(&bytes);
        let _ = Session::from_bytes(&bytes);
        let _ = PrekeyBundle::from_bytes(&bytes);
        let _ = nano_crypto::session::payload_mode(&bytes);
    }
}

#[test]
fn every_bit_of_one_message_flipped_exhaustively() {
    for mode in CryptoMode::ALL {
        let (mut p, m) = steady_message(mode);
        for bit in 0..8 * m.len() {
            let mut bad = m.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(p.b_reads(&bad).is_err(), "{mode} bit {bit}");
        }
        assert!(p.b_reads(&m).is_ok());
        let _ = p.r.next_u32();
    }
}

#[test]
fn a_previous_chain_skipped_past_the_bound_is_too_far_ahead() {
    for mode in [CryptoMode::Classical, CryptoMode::Hybrid] {
        let mut p = Pair::new(mode, false, 15);
        let r = p.b_to_a(b"bob first");
        p.a_reads(&r).unwrap();
        // Alice's chain (on her second ratchet key) runs 1,001 messages past what Bob has seen.
        for _ in 0..MAX_SKIP_PER_CHAIN + 1 {
            p.a_to_b(b"lost");
        }
        let r = p.b_to_a(b"bob again");
        p.a_reads(&r).unwrap();
        // Her next message starts a new chain whose pn says 1,002 keys came before.
        let m = p.a_to_b(b"new chain");
        assert!(matches!(
            p.b_reads(&m).unwrap_err(),
            SessionError::TooFarAhead { .. }
        ));
    }
}

#[test]
fn an_oversized_or_foreign_message_is_malformed() {
    let (mut p, m) = steady_message(CryptoMode::Quantum);
    let mut huge = m.clone();
    huge.resize(nano_crypto::session::MAX_SESSION_PLAINTEXT + 200, 0);
    assert!(matches!(
        p.b_reads(&huge).unwrap_err(),
        SessionError::Malformed(_)
    ));
    let (_, classical) = steady_message(CryptoMode::Classical);
    assert_eq!(
        p.b_reads(&classical).unwrap_err(),
        SessionError::ModeMismatch {
            expected: CryptoMode::Quantum,
            got: CryptoMode::Classical
        }
    );
    let mut envelope_like = m.clone();
    envelope_like[0] = 0x01;
    assert!(matches!(
        p.b_reads(&envelope_like).unwrap_err(),
        SessionError::Malformed(_)
    ));
}

#[test]
fn a_handshake_without_a_one_time_prekey_is_accepted_once() {
    let [alice, bob, _] = people();
    let mut r = rng(16);
    for mode in CryptoMode::ALL {
        let mut secrets = prekeys(bob, mode, 1, &mut r);
        let b = bundle(bob, &secrets, false);
        let (_, hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &b,
            AeadId::Aes256Gcm,
            b"x",
            &mut r,
        )
        .unwrap();
        let first =
            Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap();
        let shown = format!("{first:?}");
        assert!(
            shown.contains("plaintext_len: 1") && !shown.contains("[120]"),
            "{shown}"
        );
        assert_eq!(
            Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap_err(),
            SessionError::Duplicate,
            "{mode}"
        );
        // A fresh handshake against the same prekeys is still welcome.
        let (_, hs2) = Session::initiate(
            alice,
            bob.public_bundle(),
            &b,
            AeadId::Aes256Gcm,
            b"y",
            &mut r,
        )
        .unwrap();
        assert!(Session::respond(bob, &mut secrets, alice.public_bundle(), &hs2, &mut r).is_ok());
    }
}

#[test]
fn rotation_keeps_the_previous_signed_prekeys_and_refuses_a_reused_id() {
    let [alice, bob, _] = people();
    let mut r = rng(17);
    let mode = CryptoMode::Hybrid;
    let mut secrets = prekeys(bob, mode, 0, &mut r);
    let old = bundle(bob, &secrets, false);
    let (_, hs_old) = Session::initiate(
        alice,
        bob.public_bundle(),
        &old,
        AeadId::Aes256Gcm,
        b"old",
        &mut r,
    )
    .unwrap();
    let next = SignedPrekeySecrets::generate(mode, 2, &mut r).unwrap();
    secrets.rotate(next, 1).unwrap();
    assert_eq!(secrets.current().unwrap().id(), 2);
    // A handshake made against the previous record still completes in the grace period.
    assert!(Session::respond(bob, &mut secrets, alice.public_bundle(), &hs_old, &mut r).is_ok());
    let again = SignedPrekeySecrets::generate(mode, 2, &mut r).unwrap();
    assert!(matches!(
        secrets.rotate(again, 1),
        Err(SessionError::Malformed(_))
    ));
    // Past the grace period the old record is gone.
    let third = SignedPrekeySecrets::generate(mode, 3, &mut r).unwrap();
    secrets.rotate(third, 0).unwrap();
    let (_, hs) = Session::initiate(
        alice,
        bob.public_bundle(),
        &old,
        AeadId::Aes256Gcm,
        b"late",
        &mut r,
    )
    .unwrap();
    assert_eq!(
        Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap_err(),
        SessionError::UnknownPrekey {
            kind: "signed",
            id: 1
        }
    );
}

#[test]
fn one_time_secrets_go_with_the_record_they_were_added_under() {
    let mut r = rng(19);
    let mode = CryptoMode::Classical;
    let mut secrets = prekeys(&people()[1], mode, 2, &mut r);
    secrets
        .rotate(SignedPrekeySecrets::generate(mode, 2, &mut r).unwrap(), 1)
        .unwrap();
    secrets.add_one_time(OneTimePrekeys::generate(mode, 500, 3, &mut r).unwrap());
    let ids = |s: &PrekeySecrets| s.one_time().publics().map(|p| p.id()).collect::<Vec<_>>();
    assert_eq!(ids(&secrets), [100, 101, 500, 501, 502]);
    // The link survives the store.
    let mut secrets = PrekeySecrets::from_bytes(&secrets.to_bytes()).unwrap();
    // Record 1 rotated out: the relay drops its batch, and its secrets go with it.
    secrets
        .rotate(SignedPrekeySecrets::generate(mode, 3, &mut r).unwrap(), 1)
        .unwrap();
    assert_eq!(ids(&secrets), [500, 501, 502]);
    secrets
        .rotate(SignedPrekeySecrets::generate(mode, 4, &mut r).unwrap(), 1)
        .unwrap();
    assert!(secrets.one_time().is_empty());
    // A stored one-time prekey naming a record not held does not load.
    let mut bytes = prekeys(&people()[1], mode, 1, &mut r).to_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    assert!(matches!(
        PrekeySecrets::from_bytes(&bytes),
        Err(SessionError::Malformed(_))
    ));
    // A compact record (taken from a bundle with a one-time prekey) makes no bundle alone.
    let held = prekeys(&people()[1], CryptoMode::Hybrid, 1, &mut r);
    let compact = held
        .bundle(&people()[1], true, &mut r)
        .unwrap()
        .signed()
        .clone();
    assert!(matches!(
        PrekeyBundle::new(compact, None),
        Err(SessionError::Malformed(_))
    ));
}

#[test]
fn prekey_secrets_round_trip_and_a_mismatched_record_is_refused() {
    let [alice, bob, _] = people();
    let mut r = rng(18);
    for mode in CryptoMode::ALL {
        let mut secrets = prekeys(bob, mode, 3, &mut r);
        let lr = bundle(bob, &secrets, false);
        let (_, hs) = Session::initiate(
            alice,
            bob.public_bundle(),
            &lr,
            AeadId::Aes256Gcm,
            b"x",
            &mut r,
        )
        .unwrap();
        Session::respond(bob, &mut secrets, alice.public_bundle(), &hs, &mut r).unwrap();
        let one = bundle(bob, &secrets, true);
        let bytes = secrets.to_bytes();
        let mut back = PrekeySecrets::from_bytes(&bytes).unwrap();
        assert_eq!(*back.to_bytes(), *bytes, "{mode}: canonical");
        assert_eq!(back.one_time().len(), 3);
        // The restored secrets answer a one-time handshake and still refuse the replay.
        let (_, hs1) = Session::initiate(
            alice,
            bob.public_bundle(),
            &one,
            AeadId::Aes256Gcm,
            b"1",
            &mut r,
        )
        .unwrap();
        assert!(Session::respond(bob, &mut back, alice.public_bundle(), &hs1, &mut r).is_ok());
        assert_eq!(
            Session::respond(bob, &mut back, alice.public_bundle(), &hs, &mut r).unwrap_err(),
            SessionError::Duplicate
        );
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                PrekeySecrets::from_bytes(&bytes[..cut]).is_err(),
                "{mode} cut {cut}"
            );
        }
        // The version-1 encoding of the same secrets (public records kept beside them) is read
        // as the same secrets; one whose record does not match its secret is refused.
        let v1 = version_1(&secrets, &bytes);
        assert_eq!(*PrekeySecrets::from_bytes(&v1).unwrap().to_bytes(), *bytes);
        let key_at = 3 + x25519_len(mode) + lr_seed_len(mode) + 4 + 5;
        let mut bad = v1.clone();
        bad[key_at] ^= 0x10;
        assert!(matches!(
            PrekeySecrets::from_bytes(&bad),
            Err(SessionError::Malformed(_))
        ));
    }
}

fn x25519_len(mode: CryptoMode) -> usize {
    if mode == CryptoMode::Quantum { 0 } else { 32 }
}

fn lr_seed_len(mode: CryptoMode) -> usize {
    match mode {
        CryptoMode::Classical => 0,
        CryptoMode::Hybrid => 32,
        CryptoMode::Quantum => 64,
    }
}

/// `secrets` (one signed record; encoded as `v2`) in the version-1 layout of
/// `prekey_state.rs`: each secret followed by `len (4) ‖ mode ‖ id ‖ public keys ‖ signature`.
fn version_1(secrets: &PrekeySecrets, v2: &[u8]) -> Vec<u8> {
    let mode = secrets.mode();
    let sig = vec![0xEE; nano_crypto::sign::signature_len(mode)];
    let record = |id: u32, keys: &[&[u8]]| {
        let mut r = vec![mode.to_byte()];
        r.extend_from_slice(&id.to_be_bytes());
        keys.iter().for_each(|k| r.extend_from_slice(k));
        r.extend_from_slice(&sig);
        let mut out = (r.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&r);
        out
    };
    let current = secrets.current().unwrap();
    let public = current.certify(&people()[1], None, &mut rng(1)).unwrap();
    let keys: Vec<&[u8]> = public
        .x25519()
        .map(|k| &k[..])
        .into_iter()
        .chain(public.last_resort().map(|k| k.as_bytes()))
        .collect();
    let secret_len = x25519_len(mode) + lr_seed_len(mode);
    let mut out = vec![1, mode.to_byte(), 1];
    out.extend_from_slice(&v2[3..3 + secret_len]);
    out.extend_from_slice(&record(current.id(), &keys));
    let seen_at = 3 + secret_len + 4;
    let seen = usize::from(u16::from_be_bytes([v2[seen_at], v2[seen_at + 1]]));
    let one_time_at = seen_at + 2 + 32 * seen;
    out.extend_from_slice(&v2[seen_at..one_time_at + 4]);
    let seed_len = lr_seed_len(mode).max(32);
    let mut at = one_time_at + 4;
    for p in secrets.one_time().publics() {
        out.extend_from_slice(&v2[at..at + seed_len]);
        out.extend_from_slice(&record(p.id(), &[p.key().as_bytes()]));
        at += seed_len + 8;
    }
    assert_eq!(at, v2.len());
    out
}
