//! Hostile inputs in the Wycheproof spirit: X25519 low-order points, non-canonical and malleable
//! Ed25519 signatures and keys, composite signatures with stripped/swapped/re-ordered halves,
//! cross-mode confusion. Every case is an error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::primitives::ed25519::{Ed25519KeyPair, Ed25519PublicKey};
use nano_crypto::primitives::x25519::{self, X25519KeyPair};
use nano_crypto::sign::{self, SigContext};
use nano_crypto::{
    CryptoError, CryptoMode, KemCiphertext, KemKeyPair, KemPublicKey, Signature, SigningKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Low-order (and non-canonical low-order) Curve25519 u-coordinates (RFC 7748, Wycheproof).
const LOW_ORDER: [&str; 7] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(99)
}

fn point(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

#[test]
fn rfc7748_x25519_vector() {
    // RFC 7748 §6.1 Alice/Bob.
    let a = X25519KeyPair::from_secret(&point(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ))
    .unwrap();
    let b = X25519KeyPair::from_secret(&point(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ))
    .unwrap();
    assert_eq!(
        hex::encode(a.public_key()),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    let s = a.diffie_hellman(b.public_key()).unwrap();
    assert_eq!(
        hex::encode(s.expose()),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
}

#[test]
fn x25519_low_order_points_are_rejected_everywhere() {
    let kp = X25519KeyPair::from_secret(&[7u8; 32]).unwrap();
    let kem = KemKeyPair::from_seed(CryptoMode::Classical, &[7u8; 32]).unwrap();
    for h in LOW_ORDER {
        let p = point(h);
        assert_eq!(kp.diffie_hellman(&p), Err(CryptoError::KeyAgreement), "{h}");
        assert_eq!(kp.decapsulate(&p), Err(CryptoError::KeyAgreement), "{h}");
        assert_eq!(
            x25519::encapsulate_derand(&p, &[9u8; 32]).err(),
            Some(CryptoError::KeyAgreement)
        );
        let ct = KemCiphertext::from_bytes(CryptoMode::Classical, &p).unwrap();
        assert_eq!(kem.decapsulate(&ct), Err(CryptoError::KeyAgreement));
        // A public key is refused when decoded (a bundle carrying one never registers).
        assert!(
            matches!(
                KemPublicKey::from_bytes(CryptoMode::Classical, &p),
                Err(CryptoError::InvalidKey(_))
            ),
            "{h}"
        );
        assert!(x25519::validate_public(&p).is_err(), "{h}");
    }
}

/// `[8]·u` by a Montgomery ladder (curve25519-dalek): zero exactly for small-order points.
fn cofactor_clears(u: &[u8; 32]) -> bool {
    let p = curve25519_dalek::montgomery::MontgomeryPoint(*u);
    (p * curve25519_dalek::scalar::Scalar::from(8u8)).to_bytes() == [0u8; 32]
}

#[test]
fn x25519_small_order_check_agrees_with_the_cofactor_multiplication() {
    // Every canonical entry of the list is of small order, and refused.
    for h in &LOW_ORDER[..5] {
        let p = point(h);
        assert!(cofactor_clears(&p), "{h}");
        assert!(x25519::validate_public(&p).is_err(), "{h}");
    }
    // Random canonical u-coordinates (on the curve or its twist) and real keys: the
    // multiplication and the list agree on every one.
    let mut r = rng();
    for i in 0..2_000u32 {
        let mut u = [0u8; 32];
        r.fill_bytes(&mut u);
        u[31] &= 0x7f;
        if i % 2 == 1 {
            u = *X25519KeyPair::from_secret(&u).unwrap().public_key();
        }
        if x25519::check_canonical(&u).is_err() {
            continue;
        }
        assert_eq!(
            x25519::validate_public(&u).is_err(),
            cofactor_clears(&u),
            "{}",
            hex::encode(u)
        );
    }
}

#[test]
fn x25519_public_keys_are_validated_on_decode() {
    // p − 1 is of small order; p and p + 1 are non-canonical encodings of 0 and 1; a set top bit
    // is non-canonical whatever the rest.
    let cases = [
        (
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "small-order",
        ),
        (
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "non-canonical",
        ),
        (
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "non-canonical",
        ),
        (
            "0900000000000000000000000000000000000000000000000000000000000080",
            "non-canonical",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "small-order",
        ),
    ];
    for (h, why) in cases {
        match x25519::validate_public(&point(h)) {
            Err(CryptoError::InvalidKey(what)) => assert!(what.contains(why), "{h}: {what}"),
            other => panic!("{h}: {other:?}"),
        }
    }
    // The base point (u = 9) and a real key pass.
    let mut nine = [0u8; 32];
    nine[0] = 9;
    x25519::validate_public(&nine).unwrap();
    let kp = X25519KeyPair::from_secret(&[7u8; 32]).unwrap();
    x25519::validate_public(kp.public_key()).unwrap();
    assert!(KemPublicKey::from_bytes(CryptoMode::Classical, kp.public_key()).is_ok());
    // X-Wing's X25519 half is checked the same way.
    let kem = KemKeyPair::generate(CryptoMode::Hybrid, &mut rng()).unwrap();
    let mut pk = kem.public_key().as_bytes().to_vec();
    let n = pk.len();
    assert!(KemPublicKey::from_bytes(CryptoMode::Hybrid, &pk).is_ok());
    pk[n - 32..].copy_from_slice(&point(LOW_ORDER[3]));
    assert!(matches!(
        KemPublicKey::from_bytes(CryptoMode::Hybrid, &pk),
        Err(CryptoError::InvalidKey(_))
    ));
}

#[test]
fn xwing_low_order_x25519_component_is_rejected() {
    let kem = KemKeyPair::generate(CryptoMode::Hybrid, &mut rng()).unwrap();
    let (ct, _) = kem.public_key().encapsulate(&mut rng()).unwrap();
    let mut bytes = ct.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 32..].copy_from_slice(&point(LOW_ORDER[2]));
    let bad = KemCiphertext::from_bytes(CryptoMode::Hybrid, &bytes).unwrap();
    assert_eq!(kem.decapsulate(&bad), Err(CryptoError::KeyAgreement));
}

#[test]
fn kem_cross_mode_and_length_confusion_is_rejected() {
    let hybrid = KemKeyPair::generate(CryptoMode::Hybrid, &mut rng()).unwrap();
    let quantum = KemKeyPair::generate(CryptoMode::Quantum, &mut rng()).unwrap();
    let (ct, _) = quantum.public_key().encapsulate(&mut rng()).unwrap();
    assert_eq!(
        hybrid.decapsulate(&ct),
        Err(CryptoError::ModeMismatch {
            expected: CryptoMode::Hybrid,
            got: CryptoMode::Quantum
        })
    );
    assert!(matches!(
        KemCiphertext::from_bytes(CryptoMode::Hybrid, ct.as_bytes()),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(KemPublicKey::from_bytes(CryptoMode::Quantum, hybrid.public_key().as_bytes()).is_err());
    assert!(KemKeyPair::from_seed(CryptoMode::Quantum, &[0u8; 32]).is_err());
}

/// The group order L of Ed25519, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn add_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

#[test]
fn rfc8032_test_1_and_strictness() {
    let kp = Ed25519KeyPair::from_seed(&point(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ))
    .unwrap();
    assert_eq!(
        hex::encode(kp.public_key().as_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let sig = kp.sign(b"");
    assert_eq!(
        hex::encode(sig),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    kp.public_key().verify(b"", &sig).unwrap();

    // Malleability: s + L is the same scalar mod L but non-canonical: rejected.
    let mut mall = sig;
    mall[32..].copy_from_slice(&add_l(&sig[32..]));
    assert_eq!(
        kp.public_key().verify(b"", &mall),
        Err(CryptoError::BadSignature)
    );
    // High bits of s set.
    let mut high = sig;
    high[63] |= 0xe0;
    assert_eq!(
        kp.public_key().verify(b"", &high),
        Err(CryptoError::BadSignature)
    );
    // Small-order R (the identity) with any s.
    let mut small_r = sig;
    small_r[..32].copy_from_slice(&point(LOW_ORDER[1]));
    assert_eq!(
        kp.public_key().verify(b"", &small_r),
        Err(CryptoError::BadSignature)
    );
    // Wrong length.
    assert!(matches!(
        kp.public_key().verify(b"", &sig[..63]),
        Err(CryptoError::InvalidLength { .. })
    ));
}

#[test]
fn weak_and_non_canonical_ed25519_keys_are_rejected() {
    for h in [
        "0100000000000000000000000000000000000000000000000000000000000000", // identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
        "0000000000000000000000000000000000000000000000000000000000000080", // order 4
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1, non-canonical
    ] {
        assert_eq!(
            Ed25519PublicKey::from_bytes(&point(h)),
            Err(CryptoError::InvalidKey("ed25519")),
            "{h}"
        );
    }
    // An ordinary key still decodes.
    let kp = Ed25519KeyPair::from_seed(&[3u8; 32]).unwrap();
    assert!(Ed25519PublicKey::from_bytes(kp.public_key().as_bytes()).is_ok());
}

#[test]
fn composite_signature_halves_cannot_be_stripped_swapped_or_reordered() {
    let mut r = rng();
    let a = SigningKeyPair::generate(CryptoMode::Hybrid, &mut r).unwrap();
    let b = SigningKeyPair::generate(CryptoMode::Hybrid, &mut r).unwrap();
    let vk = a.verifying_key();
    let msg = b"composite";
    let sa = a.sign(SigContext::Envelope, msg, &mut r).unwrap();
    let sb = b.sign(SigContext::Envelope, msg, &mut r).unwrap();
    vk.verify(SigContext::Envelope, msg, &sa).unwrap();
    let (ml, ed) = sa.as_bytes().split_at(3309);

    // Stripped: either half alone has the wrong length.
    assert!(Signature::from_bytes(CryptoMode::Hybrid, ml).is_err());
    assert!(Signature::from_bytes(CryptoMode::Hybrid, ed).is_err());
    // Re-ordered: Ed25519 first.
    let reordered = Signature::from_bytes(CryptoMode::Hybrid, &[ed, ml].concat()).unwrap();
    assert!(vk.verify(SigContext::Envelope, msg, &reordered).is_err());
    // Swapped: one half from another signer's signature, either way round.
    let (ml_b, ed_b) = sb.as_bytes().split_at(3309);
    for mixed in [[ml, ed_b].concat(), [ml_b, ed].concat()] {
        let s = Signature::from_bytes(CryptoMode::Hybrid, &mixed).unwrap();
        assert_eq!(
            vk.verify(SigContext::Envelope, msg, &s),
            Err(CryptoError::BadSignature)
        );
    }
    // The Ed25519 half is bound to the hybrid mode: it is no classical signature.
    let VerifyingKeyParts { ed_key } = parts(&vk);
    let classical = nano_crypto::VerifyingKey::Classical(ed_key);
    let as_classical = Signature::from_bytes(CryptoMode::Classical, ed).unwrap();
    assert_eq!(
        classical.verify(SigContext::Envelope, msg, &as_classical),
        Err(CryptoError::BadSignature)
    );
    // Another context fails.
    assert_eq!(
        vk.verify(SigContext::RelayAuth, msg, &sa),
        Err(CryptoError::BadSignature)
    );
    // Another mode's signature is a typed mismatch.
    let q = SigningKeyPair::generate(CryptoMode::Quantum, &mut r).unwrap();
    let sq = q.sign(SigContext::Envelope, msg, &mut r).unwrap();
    assert_eq!(
        vk.verify(SigContext::Envelope, msg, &sq),
        Err(CryptoError::ModeMismatch {
            expected: CryptoMode::Hybrid,
            got: CryptoMode::Quantum
        })
    );
    assert_eq!(sign::signature_len(CryptoMode::Hybrid), 3309 + 64);
}

struct VerifyingKeyParts {
    ed_key: Ed25519PublicKey,
}

fn parts(vk: &nano_crypto::VerifyingKey) -> VerifyingKeyParts {
    match vk {
        nano_crypto::VerifyingKey::Hybrid(_, e) => VerifyingKeyParts { ed_key: e.clone() },
        other => panic!("not hybrid: {other:?}"),
    }
}

#[test]
fn debug_output_never_contains_secrets() {
    let seed = [0x5au8; 32];
    let kp = SigningKeyPair::from_seed(CryptoMode::Classical, &seed).unwrap();
    let kem = KemKeyPair::from_seed(CryptoMode::Classical, &seed).unwrap();
    // Byte arrays print in decimal under `Debug` ("[90, 90, …]"), so look for both forms.
    let decimal = format!("{:?}", &seed[..4]);
    let decimal = decimal.trim_start_matches('[').trim_end_matches(']');
    assert_eq!(decimal, "90, 90, 90, 90");
    for s in [
        format!("{kp:?}"),
        format!("{kem:?}"),
        format!("{kp:#?}"),
        format!("{kem:#?}"),
    ] {
        assert!(!s.contains("5a5a5a") && !s.contains(decimal), "{s}");
    }
}
