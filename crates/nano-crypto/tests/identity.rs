#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Identities and public bundles: held modes, byte round trips, typed decoder rejections, proof of possession, negotiation, fingerprints, `Debug` hygiene.

use nano_crypto::identity::BUNDLE_VERSION;
use nano_crypto::{
    AdaptiveCryptoConfig, CryptoError, CryptoMode, Identity, MessageContext, PublicBundle,
    SigContext, kem, negotiate_modes, sign,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use CryptoMode::{Classical, Hybrid, Quantum};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn identity(min: CryptoMode, seed: u64) -> Identity {
    Identity::generate(min, &mut rng(seed)).unwrap()
}

/// Encoded length of one bundle entry: `mode ‖ kem_pk ‖ sig_pk ‖ pop_sig`.
fn entry_len(mode: CryptoMode) -> usize {
    1 + kem::public_key_len(mode) + sign::public_key_len(mode) + sign::signature_len(mode)
}

/// Byte range of each entry of a bundle with this minimum, in order.
fn entry_ranges(min: CryptoMode) -> Vec<(CryptoMode, std::ops::Range<usize>)> {
    let mut at = 3;
    min.and_stronger()
        .map(|m| {
            let r = at..at + entry_len(m);
            at = r.end;
            (m, r)
        })
        .collect()
}

/// Byte range of one mode's proof of possession inside a bundle.
fn pop_range(min: CryptoMode, mode: CryptoMode) -> std::ops::Range<usize> {
    let (_, r) = entry_ranges(min)
        .into_iter()
        .find(|(m, _)| *m == mode)
        .unwrap();
    r.end - sign::signature_len(mode)..r.end
}

/// The bundle core (what PoPs sign and the fingerprint hashes): the bundle without PoPs.
fn core_of(bundle: &[u8], min: CryptoMode) -> Vec<u8> {
    let mut core = bundle[..3].to_vec();
    for (m, r) in entry_ranges(min) {
        core.extend_from_slice(&bundle[r.start..r.end - sign::signature_len(m)]);
    }
    core
}

fn parse_err(bytes: &[u8]) -> CryptoError {
    PublicBundle::from_bytes(bytes).unwrap_err()
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x10;
    b
}

#[test]
fn generate_holds_min_mode_and_stronger_only() {
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let id = identity(min, 100 + n as u64);
        let bundle = id.public_bundle();
        let want: Vec<_> = min.and_stronger().collect();
        assert_eq!(id.min_mode(), min);
        assert_eq!(bundle.min_mode(), min);
        assert_eq!(id.modes().collect::<Vec<_>>(), want);
        assert_eq!(bundle.modes().collect::<Vec<_>>(), want);
        for m in CryptoMode::ALL {
            let held = m >= min;
            assert_eq!(id.kem(m).is_some(), held, "min {min}, kem {m}");
            assert_eq!(id.signer(m).is_some(), held, "min {min}, signer {m}");
            assert_eq!(bundle.keys(m).is_some(), held);
            assert_eq!(bundle.kem_key(m).is_some(), held);
            assert_eq!(bundle.verifying_key(m).is_some(), held);
            if held {
                assert_eq!(id.kem(m).unwrap().mode(), m);
                assert_eq!(id.signer(m).unwrap().mode(), m);
                assert_eq!(bundle.kem_key(m), Some(&id.kem(m).unwrap().public_key()));
                assert_eq!(
                    bundle.verifying_key(m),
                    Some(&id.signer(m).unwrap().verifying_key())
                );
                // Each mode's PoP verifies against that mode's key over the bundle core.
                let keys = bundle.keys(m).unwrap();
                assert_eq!(keys.pop.mode(), m);
                let bytes = bundle.to_bytes();
                assert_eq!(
                    keys.sig.verify(
                        SigContext::ProofOfPossession,
                        &core_of(&bytes, min),
                        &keys.pop
                    ),
                    Ok(())
                );
            }
        }
        assert_eq!(id.fingerprint(), bundle.fingerprint());
    }
}

#[test]
fn generation_is_deterministic_in_the_rng() {
    let a = identity(Hybrid, 7);
    let b = identity(Hybrid, 7);
    let c = identity(Hybrid, 8);
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.to_secret_bytes(), b.to_secret_bytes());
    assert_ne!(a.fingerprint(), c.fingerprint());
    assert!(a.public_bundle().same_keys(b.public_bundle()));
    assert!(!a.public_bundle().same_keys(c.public_bundle()));
}

#[test]
fn bundle_bytes_round_trip_with_documented_layout() {
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let id = identity(min, 200 + n as u64);
        let bundle = id.public_bundle();
        let bytes = bundle.to_bytes();

        // version ‖ min_mode ‖ count ‖ { mode ‖ kem_pk ‖ sig_pk ‖ pop_sig }*count
        assert_eq!(bytes[0], BUNDLE_VERSION);
        assert_eq!(bytes[1], min.to_byte());
        assert_eq!(usize::from(bytes[2]), min.and_stronger().count());
        let ranges = entry_ranges(min);
        assert_eq!(bytes.len(), ranges.last().unwrap().1.end);
        for (m, r) in &ranges {
            assert_eq!(bytes[r.start], m.to_byte());
            let kem_end = r.start + 1 + kem::public_key_len(*m);
            assert_eq!(
                &bytes[r.start + 1..kem_end],
                bundle.kem_key(*m).unwrap().as_bytes()
            );
            let sig_end = kem_end + sign::public_key_len(*m);
            assert_eq!(
                bytes[kem_end..sig_end].to_vec(),
                bundle.verifying_key(*m).unwrap().to_bytes()
            );
            assert_eq!(
                &bytes[sig_end..r.end],
                bundle.keys(*m).unwrap().pop.as_bytes()
            );
        }

        // Fingerprint = SHA-256("nano-messenger/v1 fingerprint" ‖ core).
        let mut h = Sha256::new();
        h.update(b"nano-messenger/v1 fingerprint");
        h.update(core_of(&bytes, min));
        let fp: [u8; 32] = h.finalize().into();
        assert_eq!(bundle.fingerprint().0, fp);

        let parsed = PublicBundle::from_bytes(&bytes).unwrap();
        assert_eq!(&parsed, bundle);
        assert_eq!(parsed.fingerprint(), id.fingerprint());
        assert!(parsed.same_keys(bundle));
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(parsed.min_mode(), min);
    }
}

#[test]
fn secret_bytes_round_trip_keeps_fingerprint() {
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let mut r = rng(300 + n as u64);
        let id = Identity::generate(min, &mut r).unwrap();
        let secret = id.to_secret_bytes();

        // version ‖ min_mode ‖ { mode ‖ kem_seed ‖ sig_seed }*
        assert_eq!(secret[0], 1);
        assert_eq!(secret[1], min.to_byte());
        let want_len: usize = 2 + min
            .and_stronger()
            .map(|m| 1 + kem::seed_len(m) + sign::seed_len(m))
            .sum::<usize>();
        assert_eq!(secret.len(), want_len);

        let back = Identity::from_secret_bytes(&secret, &mut r).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_eq!(back.min_mode(), min);
        assert_eq!(back.to_secret_bytes(), secret);
        assert!(back.public_bundle().same_keys(id.public_bundle()));
        // The re-made bundle is itself valid and carries the same keys.
        let rebuilt = PublicBundle::from_bytes(&back.public_bundle().to_bytes()).unwrap();
        assert_eq!(rebuilt.fingerprint(), id.fingerprint());
        for m in min.and_stronger() {
            assert_eq!(rebuilt.kem_key(m), id.public_bundle().kem_key(m));
            assert_eq!(
                rebuilt.verifying_key(m),
                id.public_bundle().verifying_key(m)
            );
            // The restored keys work against the original public bundle.
            let sig = back
                .sign(m, SigContext::Envelope, b"hello", &mut r)
                .unwrap();
            let vk = id.public_bundle().verifying_key(m).unwrap();
            assert_eq!(vk.verify(SigContext::Envelope, b"hello", &sig), Ok(()));
            let (ct, ss) = id
                .public_bundle()
                .kem_key(m)
                .unwrap()
                .encapsulate(&mut r)
                .unwrap();
            assert_eq!(back.kem(m).unwrap().decapsulate(&ct).unwrap(), ss);
        }
    }
}

#[test]
fn secret_bytes_decoder_rejections() {
    let mut r = rng(400);
    let id = identity(Classical, 401);
    let secret = id.to_secret_bytes().to_vec();

    for len in 0..secret.len() {
        let err = Identity::from_secret_bytes(&secret[..len], &mut r).unwrap_err();
        assert!(
            matches!(err, CryptoError::Truncated { .. }),
            "prefix {len}: {err:?}"
        );
    }

    let mut long = secret.clone();
    long.push(0);
    assert_eq!(
        Identity::from_secret_bytes(&long, &mut r).unwrap_err(),
        CryptoError::TrailingBytes {
            what: "identity",
            count: 1
        }
    );

    let mut v = secret.clone();
    v[0] = 2;
    assert_eq!(
        Identity::from_secret_bytes(&v, &mut r).unwrap_err(),
        CryptoError::UnsupportedVersion {
            what: "identity",
            version: 2
        }
    );

    let mut m = secret.clone();
    m[1] = 9;
    assert_eq!(
        Identity::from_secret_bytes(&m, &mut r).unwrap_err(),
        CryptoError::UnknownMode(9)
    );

    let mut e = secret.clone();
    e[2] = Quantum.to_byte();
    assert_eq!(
        Identity::from_secret_bytes(&e, &mut r).unwrap_err(),
        CryptoError::ModeMismatch {
            expected: Classical,
            got: Quantum
        }
    );
}

#[test]
fn every_truncation_of_a_classical_bundle_is_an_error() {
    let id = identity(Classical, 500);
    let bytes = id.public_bundle().to_bytes();
    assert_eq!(
        bytes.len(),
        3 + entry_len(Classical) + entry_len(Hybrid) + entry_len(Quantum)
    );
    for len in 0..bytes.len() {
        match PublicBundle::from_bytes(&bytes[..len]) {
            Err(CryptoError::Truncated { .. }) => {}
            other => panic!("prefix of {len} bytes: {other:?}"),
        }
    }
    assert!(PublicBundle::from_bytes(&bytes).is_ok());
}

#[test]
fn trailing_bytes_are_rejected() {
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let bytes = identity(min, 600 + n as u64).public_bundle().to_bytes();
        for extra in [1usize, 3] {
            let mut b = bytes.clone();
            b.extend(std::iter::repeat_n(0u8, extra));
            assert_eq!(
                parse_err(&b),
                CryptoError::TrailingBytes {
                    what: "bundle",
                    count: extra
                },
                "{min} + {extra}"
            );
        }
    }
}

#[test]
fn header_rejections_are_typed() {
    let bytes = identity(Classical, 700).public_bundle().to_bytes();

    for version in [0u8, 2, 0xff] {
        let mut b = bytes.clone();
        b[0] = version;
        assert_eq!(
            parse_err(&b),
            CryptoError::UnsupportedVersion {
                what: "bundle",
                version
            }
        );
    }

    for mode in [0u8, 4, 0x7f, 0xff] {
        let mut b = bytes.clone();
        b[1] = mode;
        assert_eq!(
            parse_err(&b),
            CryptoError::UnknownMode(mode),
            "min mode {mode}"
        );
        let mut b = bytes.clone();
        b[3] = mode;
        assert_eq!(
            parse_err(&b),
            CryptoError::UnknownMode(mode),
            "entry mode {mode}"
        );
    }

    for count in [0u8, 1, 2, 4, 0xff] {
        let mut b = bytes.clone();
        b[2] = count;
        assert!(
            matches!(parse_err(&b), CryptoError::MalformedBundle(_)),
            "count {count}"
        );
    }
}

#[test]
fn relabelled_minimum_is_malformed() {
    // A hybrid bundle claiming classical minimum: the count (2) no longer matches.
    let h = identity(Hybrid, 800).public_bundle().to_bytes();
    let mut b = h.clone();
    b[1] = Classical.to_byte();
    assert!(matches!(parse_err(&b), CryptoError::MalformedBundle(_)));
    // ...and with the count "fixed" to 3, its first entry is hybrid where classical is due.
    b[2] = 3;
    assert!(matches!(parse_err(&b), CryptoError::MalformedBundle(_)));

    // A quantum bundle claiming hybrid minimum with count 2: its first entry is quantum.
    let q = identity(Quantum, 801).public_bundle().to_bytes();
    let mut b = q.clone();
    b[1] = Hybrid.to_byte();
    assert!(matches!(parse_err(&b), CryptoError::MalformedBundle(_)));
    b[2] = 2;
    assert!(matches!(parse_err(&b), CryptoError::MalformedBundle(_)));

    // A hybrid bundle claiming quantum minimum with count 1: entry says hybrid.
    let mut b = h;
    b[1] = Quantum.to_byte();
    b[2] = 1;
    assert!(matches!(parse_err(&b), CryptoError::MalformedBundle(_)));
}

/// Reassembles a bundle from a header and entries (given as byte slices).
fn assemble(header: &[u8], entries: &[&[u8]]) -> Vec<u8> {
    let mut out = header.to_vec();
    for e in entries {
        out.extend_from_slice(e);
    }
    out
}

#[test]
fn modes_out_of_order_or_duplicated_are_malformed() {
    let bytes = identity(Classical, 900).public_bundle().to_bytes();
    let r = entry_ranges(Classical);
    let (c, h, q) = (
        &bytes[r[0].1.clone()],
        &bytes[r[1].1.clone()],
        &bytes[r[2].1.clone()],
    );
    let header = &bytes[..3];
    assert_eq!(assemble(header, &[c, h, q]), bytes);
    for (what, entries) in [
        ("c q h", [c, q, h]),
        ("h c q", [h, c, q]),
        ("q h c", [q, h, c]),
        ("c h h", [c, h, h]),
        ("c c q", [c, c, q]),
    ] {
        let b = assemble(header, &entries);
        assert!(
            matches!(parse_err(&b), CryptoError::MalformedBundle(_)),
            "{what}: {:?}",
            parse_err(&b)
        );
    }
}

#[test]
fn corrupted_proof_of_possession_is_rejected() {
    let id = identity(Classical, 1000);
    let bytes = id.public_bundle().to_bytes();
    for mode in CryptoMode::ALL {
        let pop = pop_range(Classical, mode);
        // Start, middle and end of the signature (for hybrid: ML-DSA half, Ed25519 R and s).
        let mut spots = vec![
            pop.start,
            pop.start + (pop.end - pop.start) / 2,
            pop.end - 1,
        ];
        if mode == Hybrid {
            spots.push(pop.end - 64 + 3);
            spots.push(pop.end - 20);
        }
        for at in spots {
            assert_eq!(
                parse_err(&flip(&bytes, at)),
                CryptoError::BadProofOfPossession(mode),
                "{mode} pop byte {at}"
            );
        }
    }
}

#[test]
fn tampered_keys_fail_proof_of_possession() {
    let id = identity(Classical, 1100);
    let bytes = id.public_bundle().to_bytes();
    let r = entry_ranges(Classical);
    // X25519 KEM key: any 32 bytes decode, so only the PoPs can catch it.
    assert_eq!(
        parse_err(&flip(&bytes, r[0].1.start + 1)),
        CryptoError::BadProofOfPossession(Classical)
    );
    // ML-DSA-87 verifying key bytes of the quantum entry: the core changed, so even the
    // classical PoP (checked first) fails.
    let q_sig_key = r[2].1.start + 1 + kem::public_key_len(Quantum) + 10;
    assert_eq!(
        parse_err(&flip(&bytes, q_sig_key)),
        CryptoError::BadProofOfPossession(Classical)
    );
}

#[test]
fn spliced_entries_from_another_identity_fail_proof_of_possession() {
    // Classical minimum: swap in the other identity's quantum or classical entry.
    let a = identity(Classical, 1200).public_bundle().to_bytes();
    let b = identity(Classical, 1201).public_bundle().to_bytes();
    let r = entry_ranges(Classical);
    for (what, i) in [("classical", 0usize), ("hybrid", 1), ("quantum", 2)] {
        let mut spliced = a.clone();
        spliced[r[i].1.clone()].copy_from_slice(&b[r[i].1.clone()]);
        assert_ne!(spliced, a);
        assert_eq!(
            parse_err(&spliced),
            CryptoError::BadProofOfPossession(Classical),
            "spliced {what} entry"
        );
    }

    // Hybrid minimum: the first PoP checked is hybrid's.
    let a = identity(Hybrid, 1202).public_bundle().to_bytes();
    let b = identity(Hybrid, 1203).public_bundle().to_bytes();
    let r = entry_ranges(Hybrid);
    for i in 0..2 {
        let mut spliced = a.clone();
        spliced[r[i].1.clone()].copy_from_slice(&b[r[i].1.clone()]);
        assert_eq!(
            parse_err(&spliced),
            CryptoError::BadProofOfPossession(Hybrid)
        );
    }
    // Only the PoP swapped (keys kept): that PoP is over the other core.
    let mut spliced = a.clone();
    let pop = pop_range(Hybrid, Quantum);
    spliced[pop.clone()].copy_from_slice(&b[pop]);
    assert_eq!(
        parse_err(&spliced),
        CryptoError::BadProofOfPossession(Quantum)
    );
}

#[test]
fn negotiate_modes_all_pairs_and_floors() {
    let ids: Vec<Identity> = CryptoMode::ALL
        .iter()
        .enumerate()
        .map(|(n, m)| identity(*m, 1300 + n as u64))
        .collect();
    // Negotiate over bundles as received from the wire.
    let bundles: Vec<PublicBundle> = ids
        .iter()
        .map(|i| PublicBundle::from_bytes(&i.public_bundle().to_bytes()).unwrap())
        .collect();
    let cfg = AdaptiveCryptoConfig::default();
    let slow = MessageContext {
        bandwidth_kbps: 10,
        ..MessageContext::default()
    };
    assert_eq!(cfg.select_mode(&slow), Classical);

    for a in &bundles {
        for b in &bundles {
            let both = a.min_mode().max(b.min_mode());
            let got = negotiate_modes(a, b, &[]);
            assert_eq!(
                got,
                both.and_stronger().collect::<Vec<_>>(),
                "{} x {}",
                a.min_mode(),
                b.min_mode()
            );
            assert_eq!(negotiate_modes(b, a, &[]), got, "symmetric");
            // The adaptive pick is raised to what both can do, never lowered.
            assert_eq!(cfg.select_mode_within(&slow, Classical, &got), Ok(both));

            for floor in CryptoMode::ALL {
                let want: Vec<_> = both.max(floor).and_stronger().collect();
                assert_eq!(negotiate_modes(a, b, &[floor]), want, "floor {floor}");
                assert_eq!(negotiate_modes(b, a, &[floor]), want);
            }
            // Several floors: the highest counts.
            assert_eq!(
                negotiate_modes(a, b, &[Hybrid, Classical]),
                both.max(Hybrid).and_stronger().collect::<Vec<_>>()
            );
            assert_eq!(
                negotiate_modes(a, b, &[Classical, Quantum, Hybrid]),
                vec![Quantum]
            );
        }
    }
}

#[test]
fn fingerprint_display_and_debug() {
    let id = identity(Quantum, 1400);
    let fp = id.fingerprint();
    assert_eq!(fp.to_hex(), hex::encode(fp.0));

    let shown = fp.to_string();
    let groups: Vec<&str> = shown.split(' ').collect();
    assert_eq!(groups.len(), 16);
    for g in &groups {
        assert_eq!(g.len(), 4, "{shown}");
        assert!(
            g.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{shown}"
        );
    }
    assert_eq!(shown.len(), 16 * 4 + 15);
    assert_eq!(shown.replace(' ', ""), fp.to_hex());

    assert_eq!(
        format!("{fp:?}"),
        format!("Fingerprint({})", &fp.to_hex()[..16])
    );
}

#[test]
fn debug_output_contains_no_secret_material() {
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let id = identity(min, 1500 + n as u64);
        let secret = id.to_secret_bytes();

        let mut seeds: Vec<&[u8]> = Vec::new();
        let mut at = 2;
        for m in min.and_stronger() {
            assert_eq!(secret[at], m.to_byte());
            at += 1;
            let k = kem::seed_len(m);
            let s = sign::seed_len(m);
            seeds.push(&secret[at..at + k]);
            seeds.push(&secret[at + k..at + k + s]);
            at += k + s;
        }
        assert_eq!(at, secret.len());

        let mut outputs = vec![format!("{id:?}"), format!("{id:#?}")];
        for m in min.and_stronger() {
            outputs.push(format!("{:?}", id.kem(m).unwrap()));
            outputs.push(format!("{:?}", id.signer(m).unwrap()));
        }
        assert!(outputs[0].contains(min.as_str()) || outputs[0].contains(&format!("{min:?}")));
        assert!(outputs[0].contains(&fp_debug(&id)));
        for out in &outputs {
            for seed in &seeds {
                let full = hex::encode(seed);
                assert!(!out.contains(&full), "{min}: seed leaked in {out}");
                // Every 8-byte window of every seed, too.
                for w in seed.windows(8) {
                    let h = hex::encode(w);
                    assert!(!out.contains(&h), "{min}: seed window {h} leaked in {out}");
                    assert!(!out.contains(&h.to_uppercase()));
                }
                // And not as a decimal byte list either.
                let dec = format!("{:?}", &seed[..8]);
                assert!(
                    !out.contains(&dec[1..dec.len() - 1]),
                    "{min}: decimal seed bytes"
                );
            }
        }
    }
}

fn fp_debug(id: &Identity) -> String {
    format!("{:?}", id.fingerprint())
}

#[test]
fn sign_with_a_mode_the_identity_lacks_is_not_allowed() {
    let mut r = rng(1600);
    for (n, min) in CryptoMode::ALL.into_iter().enumerate() {
        let id = identity(min, 1601 + n as u64);
        for mode in CryptoMode::ALL {
            let res = id.sign(mode, SigContext::Envelope, b"content", &mut r);
            if mode >= min {
                let sig = res.unwrap();
                assert_eq!(sig.mode(), mode);
                let vk = id.public_bundle().verifying_key(mode).unwrap();
                assert_eq!(vk.verify(SigContext::Envelope, b"content", &sig), Ok(()));
                assert_eq!(
                    vk.verify(SigContext::KeyRotation, b"content", &sig),
                    Err(CryptoError::BadSignature)
                );
            } else {
                let err = res.unwrap_err();
                assert_eq!(err, CryptoError::ModeNotAllowed { mode, floor: min });
            }
        }
    }
}

/// A bundle whose X25519 key (classical, or X-Wing's half) is a small-order point is refused
/// when decoded, naming the key and why, before any proof is checked: it could never be used.
#[test]
fn a_bundle_with_a_small_order_x25519_key_is_refused() {
    let id = identity(CryptoMode::Classical, 41);
    let bundle = id.public_bundle().to_bytes();
    for (mode, r) in entry_ranges(CryptoMode::Classical) {
        if mode == CryptoMode::Quantum {
            continue;
        }
        // The entry's KEM key starts after its mode byte; X25519 is its last 32 bytes.
        let kem_end = r.start + 1 + kem::public_key_len(mode);
        let mut b = bundle.clone();
        b[kem_end - 32..kem_end].fill(0);
        match parse_err(&b) {
            CryptoError::InvalidKey(what) => {
                assert!(
                    what.contains("X25519") && what.contains("small-order"),
                    "{mode}: {what}"
                );
            }
            e => panic!("{mode}: {e:?}"),
        }
    }
}
