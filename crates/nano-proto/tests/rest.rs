//! REST bodies: registration claims bind a name to a verified bundle; bad bodies get codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::sign::SigContext;
use nano_crypto::{CryptoMode, Identity, OsRng};
use nano_proto::rest::{ErrorBody, RegisterRequest, claim_content};
use nano_proto::{Bytes, ErrorCode, ProtoError, Username};

fn request(id: &Identity, name: &str, mode: CryptoMode) -> RegisterRequest {
    let username = Username::new(name).unwrap();
    let claim = claim_content(&username, id.public_bundle());
    let sig = id
        .sign(mode, SigContext::ProofOfPossession, &claim, &mut OsRng)
        .unwrap();
    RegisterRequest {
        username,
        bundle: Bytes(id.public_bundle().to_bytes()),
        crypto_mode: mode,
        signature: Bytes(sig.as_bytes().to_vec()),
    }
}

#[test]
fn claim_content_layout() {
    let id = Identity::generate(CryptoMode::Hybrid, &mut OsRng).unwrap();
    let c = claim_content(&Username::new("alice").unwrap(), id.public_bundle());
    assert_eq!(&c[..23], b"nano-messenger/v1 claim");
    assert_eq!(c[23], 5);
    assert_eq!(&c[24..29], b"alice");
    assert_eq!(&c[29..], &id.fingerprint().0);
}

#[test]
fn register_request_round_trips_and_verifies() {
    let id = Identity::generate(CryptoMode::Hybrid, &mut OsRng).unwrap();
    let req = request(&id, "alice", CryptoMode::Hybrid);
    let json = serde_json::to_string(&req).unwrap();
    let back: RegisterRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, req);
    let bundle = back.bundle().unwrap();
    assert!(bundle.same_keys(id.public_bundle()));
    let claim = claim_content(&back.username, &bundle);
    let vk = bundle.verifying_key(back.crypto_mode).unwrap();
    vk.verify(
        SigContext::ProofOfPossession,
        &claim,
        &back.signature().unwrap(),
    )
    .unwrap();
    // The claim does not transfer to another name.
    let other = claim_content(&Username::new("mallory").unwrap(), &bundle);
    assert!(
        vk.verify(
            SigContext::ProofOfPossession,
            &other,
            &back.signature().unwrap()
        )
        .is_err()
    );
}

#[test]
fn bad_bodies_get_codes() {
    let id = Identity::generate(CryptoMode::Quantum, &mut OsRng).unwrap();
    let mut req = request(&id, "q", CryptoMode::Quantum);
    req.bundle.0.truncate(100);
    let err: ProtoError = req.bundle().unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidKey);
    assert_eq!(ErrorBody::from(&err).code, ErrorCode::InvalidKey);
    req.crypto_mode = CryptoMode::Classical;
    let e = req.signature().unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidSignature);
    assert!(e.to_string().starts_with("invalid signature"), "{e}");
    let unknown =
        r#"{"username":"a","bundle":"","crypto_mode":"hybrid","signature":"","admin":true}"#;
    assert!(serde_json::from_str::<RegisterRequest>(unknown).is_err());
    let bad_name = r#"{"username":"a b","bundle":"","crypto_mode":"hybrid","signature":""}"#;
    assert!(serde_json::from_str::<RegisterRequest>(bad_name).is_err());
    let json = serde_json::to_string(&ErrorBody {
        code: ErrorCode::NameTaken,
        message: "taken".into(),
    })
    .unwrap();
    assert_eq!(json, r#"{"code":"name_taken","message":"taken"}"#);
}
