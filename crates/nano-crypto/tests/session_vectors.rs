//! Pinned session vectors: the handshake and the first ratchet steps of each mode, rebuilt from
//! fixed seeds and compared byte for byte with `tests/vectors/session.json`. Every random draw
//! is recorded in the file in order, so an implementation can replay them without our RNG.
//! Set `NANO_REGENERATE_VECTORS=1` to rewrite the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::session::{
    OneTimeBatch, OneTimePrekey, OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session,
    SignedPrekeySecrets, SignedPrekeys,
};
use nano_crypto::{AeadId, CryptoMode, Identity};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde_json::{Value, json};

/// ChaCha20 that records every draw.
struct Recording {
    inner: ChaCha20Rng,
    draws: Vec<String>,
}

impl Recording {
    fn new(mode: CryptoMode) -> Self {
        Self {
            inner: ChaCha20Rng::from_seed([mode.to_byte(); 32]),
            draws: Vec::new(),
        }
    }

    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.draws)
    }
}

impl RngCore for Recording {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.draws.push(hex::encode(&*dest));
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Recording {}

fn vector_path() -> String {
    format!("{}/tests/vectors/session.json", env!("CARGO_MANIFEST_DIR"))
}

fn case(mode: CryptoMode) -> Value {
    let mut r = Recording::new(mode);
    let alice = Identity::generate(mode, &mut r).unwrap();
    let bob = Identity::generate(mode, &mut r).unwrap();
    let signed = SignedPrekeySecrets::generate(mode, 7, &mut r).unwrap();
    let one_time = OneTimePrekeys::generate(mode, 1000, 3, &mut r).unwrap();
    let batch = one_time.batch().unwrap();
    let record = signed.certify(&bob, Some(&batch), &mut r).unwrap();
    let setup_draws = r.take();
    let mut secrets = PrekeySecrets::new(signed, one_time).unwrap();
    // The middle one of three: its proof has two hashes.
    let bundle = PrekeyBundle::new(record.clone(), batch.inclusions().nth(1)).unwrap();
    let (mut a, handshake) = Session::initiate(
        &alice,
        bob.public_bundle(),
        &bundle,
        AeadId::ChaCha20Poly1305,
        b"vector 0: handshake",
        &mut r,
    )
    .unwrap();
    let handshake_draws = r.take();
    let got = Session::respond(
        &bob,
        &mut secrets,
        alice.public_bundle(),
        &handshake,
        &mut r,
    )
    .unwrap();
    assert_eq!(got.plaintext, b"vector 0: handshake");
    let respond_draws = r.take();
    let mut b = got.session;
    let mut steps = Vec::new();
    let script: [(&str, &[u8]); 4] = [
        ("alice", b"vector 1: same chain"),
        ("bob", b"vector 2: first DH ratchet step"),
        ("alice", b"vector 3: second DH ratchet step"),
        ("alice", b"vector 4"),
    ];
    for (from, pt) in script {
        let (sender, receiver) = if from == "alice" {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let m = sender.encrypt(pt, &mut r).unwrap();
        let encrypt_draws = r.take();
        assert_eq!(receiver.decrypt(&m, &mut r).unwrap(), pt);
        steps.push(json!({
            "from": from,
            "plaintext": hex::encode(pt),
            "message": hex::encode(&m),
            "encrypt_draws": encrypt_draws,
            "decrypt_draws": r.take(),
        }));
    }
    json!({
        "mode": mode.as_str(),
        "seed": hex::encode([mode.to_byte(); 32]),
        "setup_draws": setup_draws,
        "alice_identity_secret": hex::encode(&*alice.to_secret_bytes()),
        "bob_identity_secret": hex::encode(&*bob.to_secret_bytes()),
        "alice_bundle": hex::encode(alice.public_bundle().to_bytes()),
        "bob_bundle": hex::encode(bob.public_bundle().to_bytes()),
        "signed_prekeys": hex::encode(record.to_bytes()),
        "one_time_prekeys": batch.prekeys().iter().map(|p| hex::encode(p.to_bytes())).collect::<Vec<_>>(),
        "one_time_root": hex::encode(batch.root()),
        "prekey_bundle": hex::encode(bundle.to_bytes()),
        "aead": "chacha20-poly1305",
        "handshake": hex::encode(&handshake),
        "handshake_draws": handshake_draws,
        "respond_draws": respond_draws,
        "session_id": hex::encode(a.id()),
        "steps": steps,
    })
}

fn build() -> Value {
    json!({
        "generator": "rand_chacha 0.3 ChaCha20Rng (RFC 8439 block function, 20 rounds) seeded with 32 bytes of the mode byte; draws listed in order",
        "cases": CryptoMode::ALL.into_iter().map(case).collect::<Vec<_>>(),
    })
}

#[test]
fn session_vectors_match_the_pinned_file() {
    let built = build();
    if std::env::var_os("NANO_REGENERATE_VECTORS").is_some() {
        std::fs::write(vector_path(), serde_json::to_string_pretty(&built).unwrap()).unwrap();
    }
    let pinned: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_path()).unwrap()).unwrap();
    assert!(built == pinned, "session vectors changed");
}

#[test]
fn pinned_bundles_verify_and_messages_carry_their_type_and_mode_bytes() {
    let pinned: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_path()).unwrap()).unwrap();
    for c in pinned["cases"].as_array().unwrap() {
        let hexval = |k: &str| hex::decode(c[k].as_str().unwrap()).unwrap();
        let bundle = PrekeyBundle::from_bytes(&hexval("prekey_bundle")).unwrap();
        let bob = nano_crypto::PublicBundle::from_bytes(&hexval("bob_bundle")).unwrap();
        bundle.verify(&bob).unwrap();
        // The uploaded record and batch: the root covers the three one-time prekeys in order.
        let record = SignedPrekeys::from_bytes(&hexval("signed_prekeys")).unwrap();
        record.verify(&bob).unwrap();
        let batch = OneTimeBatch::new(
            c["one_time_prekeys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| OneTimePrekey::from_bytes(&hex::decode(h.as_str().unwrap()).unwrap()))
                .collect::<Result<_, _>>()
                .unwrap(),
        )
        .unwrap();
        assert!(record.covers(&batch));
        assert_eq!(
            hex::encode(batch.root()),
            c["one_time_root"].as_str().unwrap()
        );
        assert_eq!(bundle.one_time().unwrap().id(), 1001);
        let alice =
            Identity::from_secret_bytes(&hexval("alice_identity_secret"), &mut rand_core::OsRng)
                .unwrap();
        let alice_bundle = nano_crypto::PublicBundle::from_bytes(&hexval("alice_bundle")).unwrap();
        assert_eq!(alice.fingerprint(), alice_bundle.fingerprint());
        // The handshake's first message type and mode bytes.
        let hs = hexval("handshake");
        assert_eq!(hs[0], nano_crypto::session::TYPE_HANDSHAKE);
        assert_eq!(hs[1], bundle.mode().to_byte());
        for s in c["steps"].as_array().unwrap() {
            let m = hex::decode(s["message"].as_str().unwrap()).unwrap();
            assert_eq!(m[0], nano_crypto::session::TYPE_MESSAGE);
            assert_eq!(m[1], bundle.mode().to_byte());
        }
    }
}
