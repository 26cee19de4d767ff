//! Forward secrecy and post-compromise security, shown from the attacker's side: copies of
//! states and identity secrets that fail to decrypt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::{OneTimePrekeys, PrekeySecrets, Session, SessionError, SignedPrekeySecrets};
use crate::aead::AeadId;
use crate::identity::Identity;
use crate::mode::CryptoMode;

struct World {
    alice: Identity,
    bob: Identity,
    bob_prekeys: PrekeySecrets,
    a: Session,
    b: Session,
    r: ChaCha20Rng,
    handshake: Vec<u8>,
}

fn world(mode: CryptoMode, seed: u64) -> World {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let alice = Identity::generate(mode, &mut r).unwrap();
    let bob = Identity::generate(mode, &mut r).unwrap();
    let signed = SignedPrekeySecrets::generate(mode, 1, &mut r).unwrap();
    let batch = OneTimePrekeys::generate(mode, 1, 1, &mut r).unwrap();
    let mut bob_prekeys = PrekeySecrets::new(signed, batch).unwrap();
    let bundle = bob_prekeys.bundle(&bob, true, &mut r).unwrap();
    let (a, handshake) = Session::initiate(
        &alice,
        bob.public_bundle(),
        &bundle,
        AeadId::Aes256Gcm,
        b"first",
        &mut r,
    )
    .unwrap();
    let b = Session::respond(
        &bob,
        &mut bob_prekeys,
        alice.public_bundle(),
        &handshake,
        &mut r,
    )
    .unwrap()
    .session;
    World {
        alice,
        bob,
        bob_prekeys,
        a,
        b,
        r,
        handshake,
    }
}

fn copy(s: &Session) -> Session {
    Session::from_bytes(&s.to_bytes()).unwrap()
}

impl World {
    /// One round: `k` messages each way, all delivered.
    fn round(&mut self, k: usize) {
        for _ in 0..k {
            let m = self.a.encrypt(b"a", &mut self.r).unwrap();
            self.b.decrypt(&m, &mut self.r).unwrap();
        }
        for _ in 0..k {
            let m = self.b.encrypt(b"b", &mut self.r).unwrap();
            self.a.decrypt(&m, &mut self.r).unwrap();
        }
    }

    /// Rounds until both sides send with an epoch at least `target`.
    fn until_epoch(&mut self, target: u32) {
        for _ in 0..10_000 {
            if self.a.epoch() >= target && self.b.epoch() >= target {
                return;
            }
            self.round(8);
        }
        panic!("epoch {target} never reached");
    }
}

#[test]
fn identity_secrets_and_current_states_cannot_read_recorded_messages() {
    for mode in CryptoMode::ALL {
        let mut w = world(mode, 1);
        let mut recorded = Vec::new();
        for i in 0..5u8 {
            let m = w.a.encrypt(&[i], &mut w.r).unwrap();
            assert_eq!(w.b.decrypt(&m, &mut w.r).unwrap(), [i]);
            recorded.push(m);
            let m = w.b.encrypt(&[i], &mut w.r).unwrap();
            w.a.decrypt(&m, &mut w.r).unwrap();
            recorded.push(m);
        }
        w.round(3);
        if mode != CryptoMode::Classical {
            let e = w.b.epoch();
            w.until_epoch(e + 1);
        }
        // The attacker takes everything both devices hold now.
        let mut eve_b = copy(&w.b);
        let mut eve_a = copy(&w.a);
        for (i, m) in recorded.iter().enumerate() {
            let as_bob = eve_b.decrypt(m, &mut w.r);
            let as_alice = eve_a.decrypt(m, &mut w.r);
            assert!(
                as_bob.is_err() && as_alice.is_err(),
                "{mode} recorded message {i}"
            );
        }
        // The handshake's one-time prekey is gone, so the first message cannot be re-derived
        // from the identity and prekey secrets either.
        let again = Session::respond(
            &w.bob,
            &mut w.bob_prekeys,
            w.alice.public_bundle(),
            &w.handshake,
            &mut w.r,
        );
        assert!(
            matches!(again, Err(SessionError::UnknownPrekey { .. })),
            "{mode}"
        );
    }
}

#[test]
fn a_stolen_state_stops_decrypting_after_one_dh_step() {
    for mode in [CryptoMode::Classical, CryptoMode::Hybrid] {
        let mut w = world(mode, 2);
        w.round(2);
        let mut eve = copy(&w.b);
        // Until Bob answers with a fresh ratchet key, the stolen copy reads Alice's messages.
        let m = w.a.encrypt(b"still readable", &mut w.r).unwrap();
        assert_eq!(eve.decrypt(&m, &mut w.r).unwrap(), b"still readable");
        w.b.decrypt(&m, &mut w.r).unwrap();
        // One DH step: Bob sends on a new ratchet key, Alice answers on a new chain.
        let r = w.b.encrypt(b"reply", &mut w.r).unwrap();
        w.a.decrypt(&r, &mut w.r).unwrap();
        let m = w.a.encrypt(b"healed", &mut w.r).unwrap();
        assert_eq!(w.b.decrypt(&m, &mut w.r).unwrap(), b"healed");
        assert_eq!(
            eve.decrypt(&m, &mut w.r).unwrap_err(),
            SessionError::DecryptFailed,
            "{mode}"
        );
    }
}

#[test]
fn a_stolen_state_stops_decrypting_after_one_kem_epoch() {
    for mode in [CryptoMode::Hybrid, CryptoMode::Quantum] {
        let mut w = world(mode, 3);
        w.until_epoch(2);
        let stolen_at = w.b.epoch();
        let mut eve = copy(&w.b);
        // A passive attacker with the copy follows every message from Alice, as Bob does.
        // Epoch `stolen_at + 1` may be set up from a key pair already in the copy; the one
        // after it uses an encapsulation key or randomness made after the theft.
        let healed = stolen_at + 2;
        let mut eve_read_before = 0;
        loop {
            let m = w.a.encrypt(b"a", &mut w.r).unwrap();
            let epoch = w.a.epoch();
            w.b.decrypt(&m, &mut w.r).unwrap();
            let eve_result = eve.decrypt(&m, &mut w.r);
            if mode == CryptoMode::Quantum {
                // No DH ratchet: only the KEM ratchet can shut the copy out.
                if epoch >= healed {
                    assert!(eve_result.is_err(), "{mode}: copy read epoch {epoch}");
                    break;
                }
                if eve_result.is_ok() {
                    eve_read_before += 1;
                }
            } else {
                // Hybrid: the DH ratchet already shuts the copy out; to isolate the KEM ratchet,
                // give a (quantum) attacker every classical secret Bob holds now, and only the
                // epoch keys the copy had.
                let mut quantum_eve = copy(&w.b);
                let known: Vec<u32> = eve
                    .kem
                    .as_ref()
                    .unwrap()
                    .keys
                    .iter()
                    .map(|(e, _)| *e)
                    .collect();
                let kem = quantum_eve.kem.as_mut().unwrap();
                kem.keys
                    .retain(|(e, _)| known.contains(e) && *e <= stolen_at + 1);
                let m2 = w.a.encrypt(b"a", &mut w.r).unwrap();
                let epoch2 = w.a.epoch();
                let with_quantum = quantum_eve.decrypt(&m2, &mut w.r);
                w.b.decrypt(&m2, &mut w.r).unwrap();
                if epoch2 >= healed {
                    assert_eq!(
                        with_quantum.unwrap_err(),
                        SessionError::UnknownEpoch(epoch2)
                    );
                    break;
                }
                if with_quantum.is_ok() {
                    eve_read_before += 1;
                }
            }
            let r = w.b.encrypt(b"b", &mut w.r).unwrap();
            w.a.decrypt(&r, &mut w.r).unwrap();
        }
        assert!(
            eve_read_before > 0,
            "{mode}: the copy was usable before healing"
        );
    }
}

#[test]
fn a_stolen_state_cannot_forge_under_an_old_epoch_after_healing() {
    for mode in [CryptoMode::Hybrid, CryptoMode::Quantum] {
        let mut w = world(mode, 4);
        w.until_epoch(1);
        let stolen_at = w.b.epoch();
        let mut eve = copy(&w.b);
        w.until_epoch(stolen_at + 2);
        // Eve, holding Bob's old state, writes as Bob past every position Alice has seen.
        let mut forged = eve.encrypt(b"forged", &mut w.r).unwrap();
        for _ in 0..2_000 {
            let probe = copy(&w.a).decrypt(&forged, &mut w.r);
            if !matches!(probe, Err(SessionError::Duplicate)) {
                break;
            }
            forged = eve.encrypt(b"forged", &mut w.r).unwrap();
        }
        if mode == CryptoMode::Quantum {
            // Same chain keys as Bob: only the epoch rule stands between Eve and Alice.
            assert_eq!(eve.epoch(), stolen_at);
        }
        assert!(w.a.decrypt(&forged, &mut w.r).is_err(), "{mode}");
        // Bob's own messages still arrive.
        let m = w.b.encrypt(b"real", &mut w.r).unwrap();
        assert_eq!(w.a.decrypt(&m, &mut w.r).unwrap(), b"real");
    }
}

#[test]
fn an_invalid_encapsulation_key_restarts_the_exchange_and_the_message_is_delivered() {
    use super::kem_ratchet::{KemRatchet, Pending, Update};
    use super::message::{Chunk, chunk_len};
    let mut r = ChaCha20Rng::seed_from_u64(9);
    for mode in [CryptoMode::Hybrid, CryptoMode::Quantum] {
        let mut k = KemRatchet::new(
            mode,
            false,
            crate::secret::SecretBytes::new([1; 32]),
            &mut r,
        )
        .unwrap();
        // An all-0xFF encapsulation key: every coefficient ≥ q, refused by FIPS 203 §7.2.
        let size = chunk_len(mode);
        let count = match &k.pending {
            Pending::ReceivingEk { ek, .. } => ek.have.len(),
            _ => panic!("responder starts by collecting"),
        };
        let data = [0xffu8; 64];
        for i in 0..count {
            let c = Chunk {
                index: i as u8,
                data: &data[..size],
            };
            let u = k.prepare(0, Some(c), &mut r).unwrap();
            if i + 1 == count {
                assert!(matches!(u, Update::Restart), "{mode}");
            }
            k.apply(u);
        }
        match &k.pending {
            Pending::ReceivingEk { epoch, ek } => {
                assert_eq!(*epoch, 1);
                assert!(ek.have.iter().all(|h| !h), "{mode}: collection restarted");
            }
            _ => panic!("{mode}: still collecting epoch 1"),
        }
        assert_eq!(k.send_epoch, 0);
    }
}

/// `max_overhead` bounds every payload: the handshake (with a one-time prekey) and the messages
/// that carry encapsulation-key chunks; the quantum bound is the one `MAX_PAYLOAD_LEN` uses.
#[test]
fn max_overhead_bounds_handshakes_and_messages() {
    for mode in CryptoMode::ALL {
        let mut w = world(mode, 77);
        let bound = super::max_overhead(mode);
        assert!(w.handshake.len() <= b"first".len() + bound, "{mode}");
        for _ in 0..20 {
            let m = w.a.encrypt(b"abc", &mut w.r).unwrap();
            assert!(m.len() <= 3 + bound, "{mode}");
            w.b.decrypt(&m, &mut w.r).unwrap();
        }
    }
    assert_eq!(
        super::MAX_PAYLOAD_LEN,
        super::MAX_SESSION_PLAINTEXT + super::max_overhead(CryptoMode::Quantum)
    );
    assert_eq!(super::max_overhead(CryptoMode::Classical), 279);
    assert_eq!(super::max_overhead(CryptoMode::Hybrid), 4_676);
    assert_eq!(super::MAX_PAYLOAD_LEN, 71_882);
}
