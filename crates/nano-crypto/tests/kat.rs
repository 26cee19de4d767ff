//! Known-answer tests through our own API: ML-KEM (FIPS 203 / ACVP), ML-DSA (FIPS 204 / ACVP),
//! X-Wing (draft test vectors), all checked into `tests/vectors/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::primitives::mldsa::{
    MlDsa65KeyPair, MlDsa65PublicKey, MlDsa87KeyPair, MlDsa87PublicKey,
};
use nano_crypto::primitives::mlkem::{
    MlKem768KeyPair, MlKem768PublicKey, MlKem1024KeyPair, MlKem1024PublicKey,
};
use nano_crypto::primitives::xwing::{XWingKeyPair, XWingPublicKey};
use nano_crypto::{CryptoError, CryptoMode, KemCiphertext, KemKeyPair, KemPublicKey};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn h(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing {field}")),
    )
    .unwrap()
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into().unwrap()
}

/// Key generation from the ACVP seeds: the public key is the vector's `ek`, and the private
/// half is its `dk` (a ciphertext to `ek` decapsulates the same under our key pair and under
/// the vector's expanded `dk`).
#[test]
fn mlkem_keygen_vectors() {
    let v = load("mlkem.json");
    let cases = v["keygen"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (i, c) in cases.iter().enumerate() {
        let seed: [u8; 64] = arr(&[h(c, "d"), h(c, "z")].concat());
        let m = [i as u8; 32];
        let (ek, ours, theirs) = match c["parameter_set"].as_str().unwrap() {
            "ML-KEM-768" => {
                let kp = MlKem768KeyPair::from_seed(&seed);
                let (ct, _) = kp.public_key().encapsulate_derand(&m);
                (
                    kp.public_key().as_bytes().to_vec(),
                    kp.decapsulate(&ct).unwrap(),
                    MlKem768KeyPair::decapsulate_with_expanded_key(&h(c, "dk"), &ct).unwrap(),
                )
            }
            "ML-KEM-1024" => {
                let kp = MlKem1024KeyPair::from_seed(&seed);
                let (ct, _) = kp.public_key().encapsulate_derand(&m);
                (
                    kp.public_key().as_bytes().to_vec(),
                    kp.decapsulate(&ct).unwrap(),
                    MlKem1024KeyPair::decapsulate_with_expanded_key(&h(c, "dk"), &ct).unwrap(),
                )
            }
            other => panic!("unexpected {other}"),
        };
        assert_eq!(hex::encode(ek), hex::encode(h(c, "ek")), "{}", c["acvp"]);
        assert!(
            ours == theirs,
            "{}: the private key is not the vector's",
            c["acvp"]
        );
    }
}

#[test]
fn mlkem_encapsulation_vectors() {
    let v = load("mlkem.json");
    let cases = v["encapsulation"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for c in cases {
        let (ek, m, dk) = (h(c, "ek"), arr::<32>(&h(c, "m")), h(c, "dk"));
        let (ct, ss) = match c["parameter_set"].as_str().unwrap() {
            "ML-KEM-768" => {
                let (ct, ss) = MlKem768PublicKey::from_bytes(&ek)
                    .unwrap()
                    .encapsulate_derand(&m);
                let back = MlKem768KeyPair::decapsulate_with_expanded_key(&dk, &ct).unwrap();
                assert_eq!(back, ss);
                (ct.to_vec(), ss)
            }
            "ML-KEM-1024" => {
                let pk = MlKem1024PublicKey::from_bytes(&ek).unwrap();
                // Through the mode-level API too.
                let kem_pk = KemPublicKey::from_bytes(CryptoMode::Quantum, &ek).unwrap();
                let (ct2, ss2) = kem_pk.encapsulate_derand(&m).unwrap();
                let (ct, ss) = pk.encapsulate_derand(&m);
                assert_eq!(ct2.as_bytes(), &ct[..]);
                assert_eq!(ss2, ss);
                let back = MlKem1024KeyPair::decapsulate_with_expanded_key(&dk, &ct).unwrap();
                assert_eq!(back, ss);
                (ct.to_vec(), ss)
            }
            other => panic!("unexpected {other}"),
        };
        assert_eq!(hex::encode(ct), hex::encode(h(c, "c")), "{}", c["acvp"]);
        assert_eq!(
            hex::encode(ss.expose()),
            hex::encode(h(c, "k")),
            "{}",
            c["acvp"]
        );
    }
}

#[test]
fn mlkem_decapsulation_vectors_including_implicit_rejection() {
    let v = load("mlkem.json");
    let cases = v["decapsulation"].as_array().unwrap();
    assert!(
        cases
            .iter()
            .any(|c| c["implicit_rejection"] == Value::Bool(true))
    );
    for c in cases {
        let (dk, ct) = (h(c, "dk"), h(c, "c"));
        let ss = match c["parameter_set"].as_str().unwrap() {
            "ML-KEM-768" => MlKem768KeyPair::decapsulate_with_expanded_key(&dk, &ct).unwrap(),
            "ML-KEM-1024" => MlKem1024KeyPair::decapsulate_with_expanded_key(&dk, &ct).unwrap(),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(
            hex::encode(ss.expose()),
            hex::encode(h(c, "k")),
            "{}",
            c["acvp"]
        );
    }
}

#[test]
fn mlkem_rejects_invalid_encapsulation_key() {
    // FIPS 203 §7.2 modulus check: a coefficient encoded as 0xFFF (≥ q) is invalid.
    let v = load("mlkem.json");
    let ek = h(&v["keygen"][0], "ek");
    let mut bad = ek.clone();
    bad[0] = 0xff;
    bad[1] |= 0x0f;
    assert!(MlKem768PublicKey::from_bytes(&ek).is_ok());
    assert!(matches!(
        MlKem768PublicKey::from_bytes(&bad),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(MlKem768PublicKey::from_bytes(&ek[1..]).is_err());
}

/// Key generation from the ACVP seeds: the public key is the vector's `pk`, and the private
/// half is its `sk` (the same message, context and randomness sign identically with our key
/// pair and with the vector's expanded `sk`).
#[test]
fn mldsa_keygen_vectors() {
    let v = load("mldsa.json");
    let cases = v["keygen"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for c in cases {
        let seed = arr::<32>(&h(c, "seed"));
        let (msg, ctx, rnd) = (b"keygen check", b"kat", [7u8; 32]);
        let (pk, ours, theirs) = match c["parameter_set"].as_str().unwrap() {
            "ML-DSA-65" => {
                let kp = MlDsa65KeyPair::from_seed(&seed);
                (
                    kp.public_key().as_bytes().to_vec(),
                    kp.sign(msg, ctx, &rnd).unwrap(),
                    MlDsa65KeyPair::sign_with_expanded_key(&h(c, "sk"), msg, ctx, &rnd).unwrap(),
                )
            }
            "ML-DSA-87" => {
                let kp = MlDsa87KeyPair::from_seed(&seed);
                (
                    kp.public_key().as_bytes().to_vec(),
                    kp.sign(msg, ctx, &rnd).unwrap(),
                    MlDsa87KeyPair::sign_with_expanded_key(&h(c, "sk"), msg, ctx, &rnd).unwrap(),
                )
            }
            other => panic!("unexpected {other}"),
        };
        assert_eq!(hex::encode(pk), hex::encode(h(c, "pk")), "{}", c["acvp"]);
        assert_eq!(
            ours, theirs,
            "{}: the private key is not the vector's",
            c["acvp"]
        );
    }
}

#[test]
fn mldsa_siggen_vectors_external_interface() {
    let v = load("mldsa.json");
    let mut checked = 0;
    for c in v["siggen"].as_array().unwrap() {
        if c["interface"] != "external" {
            continue; // Our API exposes only the FIPS 204 external (pure, with context) interface.
        }
        let (sk, msg, ctx, rnd) = (
            h(c, "sk"),
            h(c, "message"),
            h(c, "context"),
            arr(&h(c, "rnd")),
        );
        let pk = h(c, "pk");
        let sig = match c["parameter_set"].as_str().unwrap() {
            "ML-DSA-65" => {
                let s = MlDsa65KeyPair::sign_with_expanded_key(&sk, &msg, &ctx, &rnd).unwrap();
                MlDsa65PublicKey::from_bytes(&pk)
                    .unwrap()
                    .verify(&msg, &ctx, &s)
                    .unwrap();
                s
            }
            "ML-DSA-87" => {
                let s = MlDsa87KeyPair::sign_with_expanded_key(&sk, &msg, &ctx, &rnd).unwrap();
                MlDsa87PublicKey::from_bytes(&pk)
                    .unwrap()
                    .verify(&msg, &ctx, &s)
                    .unwrap();
                s
            }
            other => panic!("unexpected {other}"),
        };
        assert_eq!(
            hex::encode(sig),
            hex::encode(h(c, "signature")),
            "{}",
            c["acvp"]
        );
        checked += 1;
    }
    assert!(checked >= 4);
}

#[test]
fn mldsa_sigver_vectors() {
    let v = load("mldsa.json");
    let cases = v["sigver"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let (pk, msg, ctx, sig) = (
            h(c, "pk"),
            h(c, "message"),
            h(c, "context"),
            h(c, "signature"),
        );
        let ok = match c["parameter_set"].as_str().unwrap() {
            "ML-DSA-65" => MlDsa65PublicKey::from_bytes(&pk)
                .unwrap()
                .verify(&msg, &ctx, &sig),
            "ML-DSA-87" => MlDsa87PublicKey::from_bytes(&pk)
                .unwrap()
                .verify(&msg, &ctx, &sig),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(
            ok.is_ok(),
            c["test_passed"].as_bool().unwrap(),
            "{}",
            c["acvp"]
        );
    }
}

#[test]
fn xwing_draft_vectors() {
    let v = load("xwing.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let seed = arr::<32>(&h(c, "seed"));
        let kp = XWingKeyPair::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(kp.public_key().as_bytes()),
            hex::encode(h(c, "pk"))
        );
        let pk = XWingPublicKey::from_bytes(&h(c, "pk")).unwrap();
        let (ct, ss) = pk.encapsulate_derand(&arr(&h(c, "eseed"))).unwrap();
        assert_eq!(hex::encode(&ct), hex::encode(h(c, "ct")));
        assert_eq!(hex::encode(ss.expose()), hex::encode(h(c, "ss")));
        assert_eq!(kp.decapsulate(&ct).unwrap(), ss);

        // The same through the mode-level API.
        let kem = KemKeyPair::from_seed(CryptoMode::Hybrid, &seed).unwrap();
        let ct = KemCiphertext::from_bytes(CryptoMode::Hybrid, &h(c, "ct")).unwrap();
        assert_eq!(
            hex::encode(kem.decapsulate(&ct).unwrap().expose()),
            hex::encode(h(c, "ss"))
        );
    }
}
