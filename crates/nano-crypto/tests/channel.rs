//! The relay `key_exchange` channel key and its confirmation: pinned vectors per mode (inputs
//! from fixed seeds), agreement of both sides, and binding to every transcript element.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::channel::{channel_key, confirmation, verify_confirmation};
use nano_crypto::{CryptoMode, KemKeyPair, OsRng, kem};

/// (mode, channel key hex, confirmation hex) for key pair seed `0x11…`, encapsulation
/// randomness `0x22…` and key_id 42.
const VECTORS: [(CryptoMode, &str, &str); 3] = [
    (
        CryptoMode::Classical,
        "a938e3e8153197984db137ceb79d7b6c08da4ba1cb7266b2dac02f265e5f826f",
        "8345aaa24abb7af3bb588347c3323d9a15324cb0f9d0c447f85f20fdf603da5c",
    ),
    (
        CryptoMode::Hybrid,
        "aeefcdc8c680c4eb741b4aa50b88bd1d03810e6f2492f453d5553041d4d772bc",
        "df9a882e90153fdaede71abf16539e3a1b2289a86ee050f4d3a2d8361c89506b",
    ),
    (
        CryptoMode::Quantum,
        "f34b40edd8520e37e19e46eb5ca6358b374a40f210d8f3a44dece02767812299",
        "6a6034960fca12e2d496f8d7877e51792bb57cd7a735ac269725ce8942a6557f",
    ),
];

fn fixed(
    mode: CryptoMode,
) -> (
    KemKeyPair,
    nano_crypto::KemCiphertext,
    nano_crypto::SharedSecret,
) {
    let kp = KemKeyPair::from_seed(mode, &vec![0x11; kem::seed_len(mode)]).unwrap();
    let (ct, ss) = kp
        .public_key()
        .encapsulate_derand(&vec![0x22; kem::encaps_rand_len(mode)])
        .unwrap();
    (kp, ct, ss)
}

#[test]
fn pinned_vectors() {
    let got: Vec<(String, String)> = VECTORS
        .iter()
        .map(|(mode, _, _)| {
            let (kp, ct, ss) = fixed(*mode);
            let key = channel_key(&ss, *mode, 42, &kp.public_key(), &ct).unwrap();
            let conf = confirmation(&key, 42);
            (hex::encode(key.expose()), hex::encode(conf))
        })
        .collect();
    if std::env::var_os("NANO_PRINT_VECTORS").is_some() {
        println!("{got:?}");
    }
    for ((mode, key_hex, conf_hex), (key, conf)) in VECTORS.iter().zip(&got) {
        assert_eq!(key, key_hex, "{mode} channel key");
        assert_eq!(conf, conf_hex, "{mode} confirmation");
    }
}

#[test]
fn both_sides_agree_and_confirmation_verifies() {
    for mode in [
        CryptoMode::Classical,
        CryptoMode::Hybrid,
        CryptoMode::Quantum,
    ] {
        let relay = KemKeyPair::generate(mode, &mut OsRng).unwrap();
        let pk = relay.public_key();
        let (ct, client_ss) = pk.encapsulate(&mut OsRng).unwrap();
        let relay_ss = relay.decapsulate(&ct).unwrap();
        let client = channel_key(&client_ss, mode, 7, &pk, &ct).unwrap();
        let server = channel_key(&relay_ss, mode, 7, &pk, &ct).unwrap();
        assert_eq!(client, server);
        let conf = confirmation(&server, 7);
        verify_confirmation(&client, 7, &conf).unwrap();
        assert!(
            verify_confirmation(&client, 8, &conf).is_err(),
            "key id is bound"
        );
        let mut bad = conf;
        bad[0] ^= 1;
        assert!(verify_confirmation(&client, 7, &bad).is_err());
        assert!(verify_confirmation(&client, 7, &conf[..31]).is_err());
    }
}

#[test]
fn key_is_bound_to_key_id_and_ciphertext() {
    let mode = CryptoMode::Hybrid;
    let (kp, ct, ss) = fixed(mode);
    let pk = kp.public_key();
    let base = channel_key(&ss, mode, 42, &pk, &ct).unwrap();
    assert_ne!(base, channel_key(&ss, mode, 43, &pk, &ct).unwrap());
    let (ct2, _) = pk
        .encapsulate_derand(&vec![0x33; kem::encaps_rand_len(mode)])
        .unwrap();
    assert_ne!(base, channel_key(&ss, mode, 42, &pk, &ct2).unwrap());
    let other = KemKeyPair::from_seed(mode, &vec![0x44; kem::seed_len(mode)]).unwrap();
    assert_ne!(
        base,
        channel_key(&ss, mode, 42, &other.public_key(), &ct).unwrap()
    );
}

/// The construction as `docs/PROTOCOL.md` describes it, through independent HKDF and HMAC code
/// (HMAC-SHA256(k, m) is HKDF-Extract with salt k).
#[test]
fn matches_an_independent_hkdf_and_hmac() {
    for (mode, _, _) in VECTORS {
        let (kp, ct, ss) = fixed(mode);
        let pk = kp.public_key();
        let mut info = b"nano-messenger/v1 channel-key".to_vec();
        info.push(mode.to_byte());
        info.extend_from_slice(&42u64.to_be_bytes());
        info.extend_from_slice(pk.as_bytes());
        info.extend_from_slice(ct.as_bytes());
        let mut okm = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, ss.expose())
            .expand(&info, &mut okm)
            .unwrap();
        let key = channel_key(&ss, mode, 42, &pk, &ct).unwrap();
        assert_eq!(&okm, key.expose(), "{mode}");
        let mut msg = b"nano-messenger/v1 kex-confirm".to_vec();
        msg.extend_from_slice(&42u64.to_be_bytes());
        let (mac, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&okm), &msg);
        assert_eq!(mac.as_slice(), confirmation(&key, 42), "{mode}");
    }
}
