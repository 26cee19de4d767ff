#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `BatchVerifier` / `VerificationTask`: per-mode and mixed batches with one bad item, hybrid halves, size and time flushing, mode mismatch.

use std::time::Duration;

use nano_crypto::batch::verify_all;
use nano_crypto::{
    BatchVerifier, CryptoError, CryptoMode, ManualClock, SigContext, Signature, SigningKeyPair,
    VerificationResult, VerificationTask, VerifyingKey,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const N: usize = 64;
/// Length of the ML-DSA-65 half at the front of a hybrid signature.
const MLDSA65_SIG_LEN: usize = 3309;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Distinct, deliberately non-monotonic ids, so "in order" cannot be confused with "sorted".
fn id(i: usize) -> u64 {
    1_000 + (i as u64 * 7_919) % 10_007
}

fn content(i: usize) -> Vec<u8> {
    format!("message number {i} for the batch verifier").into_bytes()
}

fn keys(mode: CryptoMode, n: usize, rng: &mut ChaCha20Rng) -> Vec<SigningKeyPair> {
    (0..n)
        .map(|_| SigningKeyPair::generate(mode, rng).unwrap())
        .collect()
}

/// One item before it becomes a task: who signed, what, and the signature.
#[derive(Debug, Clone)]
struct Item {
    key: VerifyingKey,
    content: Vec<u8>,
    sig: Signature,
}

impl Item {
    fn task(&self, i: usize) -> VerificationTask {
        VerificationTask::new(
            id(i),
            &self.key,
            SigContext::Envelope,
            &self.content,
            &self.sig,
        )
        .unwrap()
    }

    /// The single-signature verdict the batch must agree with.
    fn single(&self) -> Result<(), CryptoError> {
        self.key
            .verify(SigContext::Envelope, &self.content, &self.sig)
    }
}

/// `n` good items, round-robin over `signers`.
fn good_items(signers: &[SigningKeyPair], n: usize, rng: &mut ChaCha20Rng) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let k = &signers[i % signers.len()];
            let c = content(i);
            Item {
                key: k.verifying_key(),
                sig: k.sign(SigContext::Envelope, &c, rng).unwrap(),
                content: c,
            }
        })
        .collect()
}

/// Runs `items` through a `BatchVerifier` sized to flush exactly on the last push, checking that
/// no earlier push flushed, and that `verify_all` and single verification agree with it.
fn run(items: &[Item]) -> Vec<VerificationResult> {
    let mut v =
        BatchVerifier::with_clock(items.len(), Duration::from_secs(3600), ManualClock::new());
    let mut out = None;
    for (i, item) in items.iter().enumerate() {
        let r = v.push(item.task(i));
        if i + 1 < items.len() {
            assert!(r.is_none(), "push {i} flushed early");
            assert_eq!(v.len(), i + 1);
        } else {
            out = r;
        }
    }
    let results = out.expect("the last push fills the batch");
    assert!(v.is_empty());
    assert_eq!(v.time_to_deadline(), None);

    let tasks: Vec<_> = items.iter().enumerate().map(|(i, it)| it.task(i)).collect();
    assert_eq!(
        verify_all(&tasks),
        results,
        "verify_all agrees with the verifier"
    );
    assert_eq!(results.len(), items.len());
    for (i, (r, item)) in results.iter().zip(items).enumerate() {
        assert_eq!(r.id, id(i), "ids preserved in input order");
        assert_eq!(
            r.outcome,
            item.single(),
            "batch agrees with single verify at {i}"
        );
    }
    results
}

fn assert_only_bad(results: &[VerificationResult], bad: &[usize], what: &str) {
    for (i, r) in results.iter().enumerate() {
        if bad.contains(&i) {
            assert_eq!(
                r.outcome,
                Err(CryptoError::BadSignature),
                "{what}: item {i}"
            );
        } else {
            assert_eq!(r.outcome, Ok(()), "{what}: item {i}");
        }
    }
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    assert_eq!(failed, bad.len(), "{what}");
}

fn flip_bit(bytes: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[byte] ^= 1 << bit;
    b
}

#[test]
fn all_good_per_mode() {
    let mut r = rng(10);
    for mode in CryptoMode::ALL {
        let signers = keys(mode, 3, &mut r);
        let items = good_items(&signers, N, &mut r);
        let results = run(&items);
        assert_only_bad(&results, &[], mode.as_str());
    }
}

#[test]
fn exactly_one_bad_per_mode() {
    let mut r = rng(11);
    for mode in CryptoMode::ALL {
        let signers = keys(mode, 3, &mut r);
        let stranger = SigningKeyPair::generate(mode, &mut r).unwrap();
        let good = good_items(&signers, N, &mut r);
        assert_only_bad(&run(&good), &[], mode.as_str());

        // Each kind of corruption, at positions covering first, middle and last.
        for (kind, bad) in [
            (Corruption::Content, 0),
            (Corruption::OtherKey, 37),
            (Corruption::SwappedSig, N - 1),
            (Corruption::SigBit, 20),
            (Corruption::Content, N - 1),
            (Corruption::OtherKey, 0),
        ] {
            let mut items = good.clone();
            match kind {
                // A bit flipped in the message content.
                Corruption::Content => {
                    items[bad].content = flip_bit(&items[bad].content, 3, 0);
                }
                // A valid signature over the same content, but by another key of the same mode.
                Corruption::OtherKey => {
                    items[bad].sig = stranger
                        .sign(SigContext::Envelope, &items[bad].content, &mut r)
                        .unwrap();
                }
                // The signature of a different item by the same key (wrong message).
                Corruption::SwappedSig => {
                    let other = (bad + signers.len()) % N;
                    items[bad].sig = items[other].sig.clone();
                }
                // A bit flipped in the signature bytes.
                Corruption::SigBit => {
                    let sig = items[bad].sig.as_bytes();
                    let flipped = flip_bit(sig, sig.len() - 20, 2);
                    items[bad].sig = Signature::from_bytes(mode, &flipped).unwrap();
                }
            }
            assert_only_bad(&run(&items), &[bad], &format!("{mode}: {kind:?} @{bad}"));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Corruption {
    Content,
    OtherKey,
    SwappedSig,
    SigBit,
}

#[test]
fn mixed_mode_batch() {
    let mut r = rng(12);
    let signers: Vec<Vec<SigningKeyPair>> = CryptoMode::ALL
        .iter()
        .map(|m| keys(*m, 2, &mut r))
        .collect();
    let mut items: Vec<Item> = (0..N)
        .map(|i| {
            let k = &signers[i % 3][(i / 3) % 2];
            let c = content(i);
            Item {
                key: k.verifying_key(),
                sig: k.sign(SigContext::Envelope, &c, &mut r).unwrap(),
                content: c,
            }
        })
        .collect();
    for (i, it) in items.iter().enumerate() {
        assert_eq!(it.key.mode(), CryptoMode::ALL[i % 3]);
    }
    assert_only_bad(&run(&items), &[], "mixed, all good");

    // One bad of each mode: 9 (classical), 22 (hybrid), 44 (quantum).
    let bad = [9usize, 22, 44];
    for &b in &bad {
        items[b].content.push(b'!');
    }
    let results = run(&items);
    assert_only_bad(&results, &bad, "mixed, one bad per mode");
    assert_eq!(results[9].id, id(9));
}

/// Builds a hybrid signature from the ML-DSA half of `m` and the Ed25519 half of `e`.
fn splice_hybrid(m: &Signature, e: &Signature) -> Signature {
    let mut bytes = m.as_bytes()[..MLDSA65_SIG_LEN].to_vec();
    bytes.extend_from_slice(&e.as_bytes()[MLDSA65_SIG_LEN..]);
    Signature::from_bytes(CryptoMode::Hybrid, &bytes).unwrap()
}

#[test]
fn hybrid_fails_if_either_half_is_corrupt() {
    let mut r = rng(13);
    let hybrid = keys(CryptoMode::Hybrid, 2, &mut r);
    let classical = keys(CryptoMode::Classical, 2, &mut r);
    let sig_len = hybrid[0]
        .sign(SigContext::Envelope, b"x", &mut r)
        .unwrap()
        .as_bytes()
        .len();
    assert_eq!(sig_len, MLDSA65_SIG_LEN + 64);

    // A batch of good hybrid and classical items, so the Ed25519 batch equation has company.
    let mut items = good_items(&hybrid, 16, &mut r);
    items.extend(good_items(&classical, 16, &mut r));
    assert_only_bad(&run(&items), &[], "hybrid+classical good");

    let k = &hybrid[0];
    let c = items[0].content.clone();
    let good = k.sign(SigContext::Envelope, &c, &mut r).unwrap();
    let other = k
        .sign(SigContext::Envelope, b"another message", &mut r)
        .unwrap();
    // A second signature over the same content is also good (hedged ML-DSA), and so is
    // mixing the halves of two good signatures over the same content.
    let good2 = k.sign(SigContext::Envelope, &c, &mut r).unwrap();
    assert_ne!(good, good2);
    let mixed_good = splice_hybrid(&good2, &good);
    assert_eq!(
        k.verifying_key()
            .verify(SigContext::Envelope, &c, &mixed_good),
        Ok(())
    );

    let cases = [
        (
            "ed25519 half from another message",
            splice_hybrid(&good, &other),
        ),
        (
            "ml-dsa half from another message",
            splice_hybrid(&other, &good),
        ),
        (
            "bit flipped in ed25519 half (s)",
            Signature::from_bytes(
                CryptoMode::Hybrid,
                &flip_bit(good.as_bytes(), MLDSA65_SIG_LEN + 40, 0),
            )
            .unwrap(),
        ),
        (
            "bit flipped in ed25519 half (R)",
            Signature::from_bytes(
                CryptoMode::Hybrid,
                &flip_bit(good.as_bytes(), MLDSA65_SIG_LEN + 5, 1),
            )
            .unwrap(),
        ),
        (
            "bit flipped in ml-dsa half",
            Signature::from_bytes(CryptoMode::Hybrid, &flip_bit(good.as_bytes(), 100, 3)).unwrap(),
        ),
        (
            "ed25519 half by another hybrid key",
            splice_hybrid(
                &good,
                &hybrid[1].sign(SigContext::Envelope, &c, &mut r).unwrap(),
            ),
        ),
    ];
    for (what, sig) in cases {
        // Alone.
        let single = Item {
            key: k.verifying_key(),
            content: c.clone(),
            sig,
        };
        assert_eq!(single.single(), Err(CryptoError::BadSignature), "{what}");
        assert_only_bad(&run(std::slice::from_ref(&single)), &[0], what);
        // In the middle of the good batch.
        let mut batch = items.clone();
        batch[7] = single;
        assert_only_bad(&run(&batch), &[7], what);
    }
}

#[test]
fn hybrid_ed25519_half_is_not_a_classical_signature() {
    let mut r = rng(14);
    let k = SigningKeyPair::generate(CryptoMode::Hybrid, &mut r).unwrap();
    let VerifyingKey::Hybrid(_, ed) = k.verifying_key() else {
        panic!("hybrid key expected");
    };
    let c = b"domain separation".to_vec();
    let sig = k.sign(SigContext::Envelope, &c, &mut r).unwrap();
    let ed_half =
        Signature::from_bytes(CryptoMode::Classical, &sig.as_bytes()[MLDSA65_SIG_LEN..]).unwrap();
    let item = Item {
        key: VerifyingKey::Classical(ed),
        content: c,
        sig: ed_half,
    };
    assert_only_bad(&run(&[item]), &[0], "hybrid half as classical");
}

#[test]
fn wrong_context_fails() {
    let mut r = rng(15);
    for mode in CryptoMode::ALL {
        let k = SigningKeyPair::generate(mode, &mut r).unwrap();
        let sig = k.sign(SigContext::RelayAuth, b"challenge", &mut r).unwrap();
        let vk = k.verifying_key();
        let wrong =
            VerificationTask::new(1, &vk, SigContext::Envelope, b"challenge", &sig).unwrap();
        let right =
            VerificationTask::new(2, &vk, SigContext::RelayAuth, b"challenge", &sig).unwrap();
        assert_eq!(wrong.id(), 1);
        let results = verify_all(&[wrong, right]);
        assert_eq!(
            results,
            vec![
                VerificationResult {
                    id: 1,
                    outcome: Err(CryptoError::BadSignature)
                },
                VerificationResult {
                    id: 2,
                    outcome: Ok(())
                },
            ],
            "{mode}"
        );
    }
}

#[test]
fn task_rejects_mode_mismatch() {
    let mut r = rng(16);
    let signers: Vec<SigningKeyPair> = CryptoMode::ALL
        .iter()
        .map(|m| SigningKeyPair::generate(*m, &mut r).unwrap())
        .collect();
    let sigs: Vec<Signature> = signers
        .iter()
        .map(|k| k.sign(SigContext::Envelope, b"m", &mut r).unwrap())
        .collect();
    for (ki, key_mode) in CryptoMode::ALL.iter().enumerate() {
        for (si, sig_mode) in CryptoMode::ALL.iter().enumerate() {
            let res = VerificationTask::new(
                5,
                &signers[ki].verifying_key(),
                SigContext::Envelope,
                b"m",
                &sigs[si],
            );
            if key_mode == sig_mode {
                let task = res.unwrap();
                assert_eq!(task.id(), 5);
                assert_eq!(verify_all(&[task])[0].outcome, Ok(()));
            } else {
                assert_eq!(
                    res.unwrap_err(),
                    CryptoError::ModeMismatch {
                        expected: *key_mode,
                        got: *sig_mode
                    }
                );
            }
        }
    }
}

#[test]
fn flushes_by_size() {
    let mut r = rng(17);
    let signers = keys(CryptoMode::Classical, 2, &mut r);
    let mut items = good_items(&signers, 20, &mut r);
    items[3].content.push(0);
    let tasks: Vec<_> = items.iter().enumerate().map(|(i, it)| it.task(i)).collect();

    let clock = ManualClock::new();
    let mut v = BatchVerifier::with_clock(8, Duration::from_secs(1), clock.clone());
    let mut batches = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        match v.push(t.clone()) {
            None => assert_ne!(i % 8, 7, "push {i} must flush"),
            Some(results) => {
                assert_eq!(i % 8, 7, "push {i} must not flush");
                assert_eq!(results.len(), 8);
                assert!(v.is_empty());
                batches.push(results);
            }
        }
        assert_eq!(v.len(), (i + 1) % 8);
    }
    assert_eq!(batches.len(), 2);
    let first_ids: Vec<u64> = batches[0].iter().map(|r| r.id).collect();
    assert_eq!(first_ids, (0..8).map(id).collect::<Vec<_>>());
    let second_ids: Vec<u64> = batches[1].iter().map(|r| r.id).collect();
    assert_eq!(second_ids, (8..16).map(id).collect::<Vec<_>>());
    assert_only_bad(&batches[0], &[3], "first batch");
    assert_only_bad(&batches[1], &[], "second batch");

    // The remaining 4 wait for a manual flush.
    assert_eq!(v.len(), 4);
    let rest = v.flush();
    assert_eq!(
        rest.iter().map(|r| r.id).collect::<Vec<_>>(),
        (16..20).map(id).collect::<Vec<_>>()
    );
    assert!(v.is_empty());
    assert_eq!(v.flush(), Vec::new(), "flushing nothing yields nothing");

    // A batch size of 0 means 1: every push flushes.
    let mut one = BatchVerifier::with_clock(0, Duration::from_secs(1), clock);
    let out = one.push(tasks[3].clone()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Err(CryptoError::BadSignature));
    assert_eq!(one.push(tasks[4].clone()).unwrap()[0].outcome, Ok(()));
}

#[test]
fn flushes_by_time() {
    let mut r = rng(18);
    let signers = keys(CryptoMode::Quantum, 1, &mut r);
    let items = good_items(&signers, 3, &mut r);
    let clock = ManualClock::new();
    let mut v = BatchVerifier::with_clock(100, Duration::from_millis(50), clock.clone());

    // Empty: no deadline, nothing to poll, even long after.
    assert_eq!(v.time_to_deadline(), None);
    assert!(v.poll().is_none());
    clock.advance(Duration::from_secs(10));
    assert!(v.poll().is_none());
    assert_eq!(v.time_to_deadline(), None);

    assert!(v.push(items[0].task(0)).is_none());
    assert_eq!(v.time_to_deadline(), Some(Duration::from_millis(50)));
    assert!(v.poll().is_none());

    clock.advance(Duration::from_millis(20));
    assert_eq!(v.time_to_deadline(), Some(Duration::from_millis(30)));
    assert!(v.poll().is_none());

    // A later task does not reset the deadline, which belongs to the oldest.
    assert!(v.push(items[1].task(1)).is_none());
    assert_eq!(v.time_to_deadline(), Some(Duration::from_millis(30)));

    clock.advance(Duration::from_millis(29));
    assert_eq!(v.time_to_deadline(), Some(Duration::from_millis(1)));
    assert!(v.poll().is_none());
    assert_eq!(v.len(), 2);

    clock.advance(Duration::from_millis(1));
    assert_eq!(v.time_to_deadline(), Some(Duration::ZERO));
    let out = v.poll().expect("deadline reached");
    assert_eq!(
        out.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id(0), id(1)]
    );
    assert!(out.iter().all(|r| r.outcome.is_ok()));
    assert!(v.is_empty());
    assert_eq!(v.time_to_deadline(), None);
    assert!(v.poll().is_none());

    // The next task starts a new deadline from its own push time; overshooting still flushes.
    clock.advance(Duration::from_secs(5));
    assert!(v.push(items[2].task(2)).is_none());
    assert_eq!(v.time_to_deadline(), Some(Duration::from_millis(50)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(v.time_to_deadline(), Some(Duration::ZERO));
    let out = v.poll().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id, id(2));
    assert!(v.poll().is_none());
}

/// Signatures whose `R` (or whose key) carries a small-order component: single and batch
/// verification must give the same answer for every one of them, whatever the batch's random
/// coefficients (regression: a cofactorless batch accepted about half of such signatures that
/// single verification rejected).
#[test]
fn batch_and_single_agree_on_mixed_order_points() {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};

    let order2 = {
        let mut t = [0xffu8; 32];
        t[0] = 0xec;
        t[31] = 0x7f;
        CompressedEdwardsY(t).decompress().unwrap()
    };
    let expanded = |seed: [u8; 32]| {
        let h = Sha512::digest(seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    };
    // Signs `content` by hand with secret scalar `a` under public key `a_pub`, adding `r_torsion`
    // to the nonce point.
    let forge = |a: Scalar, a_pub: [u8; 32], content: &[u8], r_torsion: bool| {
        let tbs =
            nano_crypto::sign::to_be_signed(CryptoMode::Classical, SigContext::Envelope, content);
        let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(content).into());
        let rp = if r_torsion { r * B + order2 } else { r * B };
        let rb = rp.compress().to_bytes();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(rb)
                .chain_update(a_pub)
                .chain_update(&tbs)
                .finalize()
                .into(),
        );
        let mut sig = rb.to_vec();
        sig.extend_from_slice(&(r + k * a).to_bytes());
        Signature::from_bytes(CryptoMode::Classical, &sig).unwrap()
    };

    // Mixed-order R under an honest key.
    let seed = [7u8; 32];
    let a = expanded(seed);
    let honest = SigningKeyPair::from_seed(CryptoMode::Classical, &seed)
        .unwrap()
        .verifying_key();
    let honest_pub: [u8; 32] = honest.to_bytes().try_into().unwrap();
    // A mixed-order key (a·B + T2) with honest nonces.
    let mixed_pub = (a * B + order2).compress().to_bytes();
    let mixed = VerifyingKey::from_bytes(CryptoMode::Classical, &mixed_pub).unwrap();

    for i in 0..48 {
        let content = format!("message {i}").into_bytes();
        for (vk, pubkey, torsion) in [(&honest, honest_pub, true), (&mixed, mixed_pub, false)] {
            let sig = forge(a, pubkey, &content, torsion);
            let single = vk.verify(SigContext::Envelope, &content, &sig);
            let task = VerificationTask::new(1, vk, SigContext::Envelope, &content, &sig).unwrap();
            let alone = verify_all(std::slice::from_ref(&task));
            assert_eq!(alone[0].outcome, single, "alone, case {i}");
            // And inside a batch with a good signature, so the batch equation itself decides.
            let good_kp = SigningKeyPair::from_seed(CryptoMode::Classical, &[8u8; 32]).unwrap();
            let good = good_kp
                .sign(SigContext::Envelope, b"ok", &mut rand_core::OsRng)
                .unwrap();
            let g = VerificationTask::new(
                2,
                &good_kp.verifying_key(),
                SigContext::Envelope,
                b"ok",
                &good,
            )
            .unwrap();
            let both = verify_all(&[g, task]);
            assert_eq!(both[0].outcome, Ok(()));
            assert_eq!(both[1].outcome, single, "batched, case {i}");
        }
    }
}
