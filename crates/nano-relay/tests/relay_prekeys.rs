//! The prekey service end to end against the real binary (PROTOCOL.md §14.13): uploads are the
//! authenticated user's own and checked record by record; each one-time prekey is handed out
//! once, then the last-resort prekey answers; claims are rate limited per requester; the owner
//! learns its counts in `auth_ok`; a new signed-prekeys record replaces the served one on every
//! relay, through the caches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::collections::HashSet;

use nano_crypto::session::{
    OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SignedPrekeySecrets,
};
use nano_crypto::{AeadId, CryptoMode, OsRng, PublicBundle, SigContext};
use nano_proto::rest::{RotateKeysRequest, rotation_content};
use nano_proto::{Bytes, ClientFrame, PrekeyCounts, RelayFrame, Username};
use relay_common::{
    Config, PgDb, Relay, User, Ws, metric, redis_prefix, redis_url, wait_for_subscribers,
};

/// `user`'s signed prekeys (id `id`) and `n` one-time prekeys (ids from `first`) in `mode`.
fn prekeys(
    user: &User,
    mode: CryptoMode,
    id: u32,
    first: u32,
    n: u32,
) -> (SignedPrekeySecrets, OneTimePrekeys) {
    let _ = user;
    let signed = SignedPrekeySecrets::generate(mode, id, &mut OsRng).unwrap();
    let one_time = OneTimePrekeys::generate(mode, first, n, &mut OsRng).unwrap();
    (signed, one_time)
}

/// An upload of `signed` (signed by `signer` over the root of `one_time`) and `one_time`.
fn upload(
    mode: CryptoMode,
    signer: &User,
    signed: Option<&SignedPrekeySecrets>,
    one_time: &OneTimePrekeys,
) -> ClientFrame {
    let batch = (!one_time.is_empty()).then(|| one_time.batch().unwrap());
    ClientFrame::UploadPrekeys {
        crypto_mode: mode,
        signed_prekeys: signed.map(|s| {
            Bytes(
                s.certify(&signer.identity, batch.as_ref(), &mut OsRng)
                    .unwrap()
                    .to_bytes(),
            )
        }),
        one_time_prekeys: one_time.publics().map(|p| Bytes(p.to_bytes())).collect(),
        replace_one_time: false,
    }
}

async fn expect_uploaded(ws: &mut Ws, mode: CryptoMode) -> u64 {
    match ws.recv().await {
        RelayFrame::PrekeysUploaded {
            crypto_mode,
            one_time_prekeys,
        } => {
            assert_eq!(crypto_mode, mode);
            one_time_prekeys
        }
        f => panic!("expected prekeys_uploaded, got {f:?}"),
    }
}

/// `owner`'s bundle of `mode` as the relay hands it to `ws`'s user, verified.
async fn get_bundle(ws: &mut Ws, owner: &User, mode: CryptoMode) -> PrekeyBundle {
    ws.send(&ClientFrame::GetPrekeys {
        username: owner.name.clone(),
        crypto_mode: mode,
    })
    .await;
    match ws.recv().await {
        RelayFrame::PrekeyBundle {
            username,
            crypto_mode,
            bundle,
        } => {
            assert_eq!((username, crypto_mode), (owner.name.clone(), mode));
            let b = PrekeyBundle::from_bytes(bundle.as_slice()).unwrap();
            b.verify(owner.identity.public_bundle()).unwrap();
            b
        }
        f => panic!("expected prekey_bundle, got {f:?}"),
    }
}

fn get(name: &str, mode: CryptoMode) -> ClientFrame {
    ClientFrame::GetPrekeys {
        username: Username::new(name).unwrap(),
        crypto_mode: mode,
    }
}

/// Bob publishes hybrid prekeys; alice takes each one-time prekey once, then gets the
/// last-resort bundle; a session started from a bundle opens on bob's side; bob's counts
/// reach him in `auth_ok`.
async fn claims_hand_out_each_one_time_prekey_once(cfg: Config) {
    let mode = CryptoMode::Hybrid;
    let relay = Relay::start(&cfg).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    alice.register(&relay).await;
    bob.register(&relay).await;

    // Before any upload, auth_ok has no counts and there is nothing to claim.
    let mut b = relay.connect().await;
    let ch = b.challenge().await;
    b.send(&bob.auth(CryptoMode::Classical, &ch)).await;
    assert!(matches!(
        b.recv().await,
        RelayFrame::AuthOk {
            one_time_prekeys: None,
            ..
        }
    ));
    let _ = b.page().await;
    let (mut a, _) = alice.connect(&relay).await;
    a.send(&get("bob", mode)).await;
    a.expect_error("no_prekeys").await;

    let (signed, one_time) = prekeys(&bob, mode, 7, 100, 3);
    b.send(&upload(mode, &bob, Some(&signed), &one_time)).await;
    assert_eq!(expect_uploaded(&mut b, mode).await, 3);
    let mut secrets = PrekeySecrets::new(signed, one_time).unwrap();

    let mut seen = HashSet::new();
    let mut first = None;
    for _ in 0..3 {
        let bundle = get_bundle(&mut a, &bob, mode).await;
        assert_eq!(bundle.signed().id(), 7);
        let ot = bundle
            .one_time()
            .expect("a one-time prekey while some are left");
        assert!(
            seen.insert(ot.id()),
            "one-time prekey {} handed out twice",
            ot.id()
        );
        first.get_or_insert(bundle);
    }
    assert_eq!(seen, HashSet::from([100, 101, 102]));
    // None left: the last-resort bundle.
    let last = get_bundle(&mut a, &bob, mode).await;
    assert!(last.one_time().is_none());

    // A session from the first bundle opens with bob's secrets.
    let (_, hs) = Session::initiate(
        &alice.identity,
        bob.identity.public_bundle(),
        &first.unwrap(),
        AeadId::Aes256Gcm,
        b"hi bob",
        &mut OsRng,
    )
    .unwrap();
    let opened = Session::respond(
        &bob.identity,
        &mut secrets,
        alice.identity.public_bundle(),
        &hs,
        &mut OsRng,
    )
    .unwrap();
    assert_eq!(opened.plaintext.as_slice(), b"hi bob");
    assert!(opened.one_time_prekey.is_some());

    // Bob learns he has none left; he adds two, and his own request takes none of them.
    drop(b);
    let mut b = relay.connect().await;
    let ch = b.challenge().await;
    b.send(&bob.auth(CryptoMode::Classical, &ch)).await;
    match b.recv().await {
        RelayFrame::AuthOk {
            one_time_prekeys, ..
        } => assert_eq!(one_time_prekeys, Some(PrekeyCounts::default())),
        f => panic!("expected auth_ok, got {f:?}"),
    }
    let _ = b.page().await;
    let (eight, more) = prekeys(&bob, mode, 8, 200, 2);
    b.send(&upload(mode, &bob, Some(&eight), &more)).await;
    assert_eq!(expect_uploaded(&mut b, mode).await, 2);
    assert!(get_bundle(&mut b, &bob, mode).await.one_time().is_none());
    // One-time prekeys without the record that certifies them are refused.
    b.send(&upload(mode, &bob, None, &more)).await;
    b.expect_error("invalid_field").await;
    // A device that lost the secrets replaces them: the two are gone, one new one is held.
    let (_, fresh) = prekeys(&bob, mode, 8, 300, 1);
    let mut replacing = upload(mode, &bob, Some(&eight), &fresh);
    if let ClientFrame::UploadPrekeys {
        replace_one_time, ..
    } = &mut replacing
    {
        *replace_one_time = true;
    }
    b.send(&replacing).await;
    assert_eq!(expect_uploaded(&mut b, mode).await, 1);
    // The one left is served with its own batch's record, which verifies.
    let served = get_bundle(&mut a, &bob, mode).await;
    assert_eq!(served.one_time().map(|o| o.id()), Some(300));
    assert_eq!(served.signed().id(), 8);
    let metrics = relay.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"nano_messenger_prekey_bundles_total{prekey="one_time"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"nano_messenger_prekey_bundles_total{prekey="last_resort"}"#
        ),
        Some(2.0)
    );
}

on_each_storage!(claims_hand_out_each_one_time_prekey_once:
    claims_hand_out_each_one_time_prekey_once_on_sqlite,
    claims_hand_out_each_one_time_prekey_once_on_postgres);

/// `get_contact` answers with the identity bundle as registered beside what `get_prekeys`
/// would have given: no prekey bundle before an upload, then the one-time prekey claimed (once),
/// then the last-resort bundle; its refusals are `get_prekeys`'.
#[tokio::test]
async fn get_contact_brings_the_identity_bundle_beside_the_claim() {
    let cfg = Config::new();
    let relay = Relay::start(&cfg).await;
    let mode = CryptoMode::Hybrid;
    let alice = User::new("alice", mode);
    let bob = User::new("bob", mode);
    alice.register(&relay).await;
    let registered = bob.register(&relay).await;
    let (mut a, _) = alice.connect(&relay).await;
    let contact = |name: &str, m: CryptoMode| ClientFrame::GetContact {
        username: Username::new(name).unwrap(),
        crypto_mode: m,
    };
    let ask = async |a: &mut Ws| {
        // Any spelling of the name; the answer gives the canonical one.
        a.send(&contact("BOB", mode)).await;
        match a.recv().await {
            RelayFrame::Contact {
                username,
                crypto_mode,
                identity,
                bundle,
            } => {
                assert_eq!((username, crypto_mode), (registered.username.clone(), mode));
                assert_eq!(identity, registered.bundle);
                bundle.map(|b| {
                    let b = PrekeyBundle::from_bytes(b.as_slice()).unwrap();
                    b.verify(bob.identity.public_bundle()).unwrap();
                    b
                })
            }
            f => panic!("expected contact, got {f:?}"),
        }
    };
    // Before bob uploads: the identity alone.
    assert!(ask(&mut a).await.is_none());

    let (mut b, _) = bob.connect(&relay).await;
    let (signed, one_time) = prekeys(&bob, mode, 3, 40, 1);
    b.send(&upload(mode, &bob, Some(&signed), &one_time)).await;
    assert_eq!(expect_uploaded(&mut b, mode).await, 1);
    let claimed = ask(&mut a).await.expect("a prekey bundle");
    assert_eq!(claimed.one_time().map(|p| p.id()), Some(40));
    let last = ask(&mut a).await.expect("the last-resort bundle");
    assert_eq!(last.signed().id(), 3);
    assert!(last.one_time().is_none());
    a.send(&contact("nobody", mode)).await;
    a.expect_error("not_found").await;
    a.send(&contact("bob", CryptoMode::Classical)).await;
    a.expect_error("mode_not_allowed").await;
    let mut anon = relay.connect().await;
    anon.send(&contact("bob", mode)).await;
    anon.expect_error("unauthorized").await;
}

/// `get_identity` answers with the identity bundle as registered (the bytes HTTP serves), under
/// the canonical name, in either frame form; after a key rotation, the new bundle. Refusals:
/// `not_found`, and `unauthorized` before `auth`.
#[tokio::test]
async fn get_identity_serves_the_registered_bundle() {
    let relay = Relay::start(&Config::new()).await;
    let mode = CryptoMode::Hybrid;
    let alice = User::new("alice", mode);
    let bob = User::new("bob", mode);
    alice.register(&relay).await;
    let registered = bob.register(&relay).await;
    let ask = |name: &str| ClientFrame::GetIdentity {
        username: Username::new(name).unwrap(),
    };
    let identity = async |a: &mut Ws, name: &str| {
        a.send(&ask(name)).await;
        match a.recv().await {
            RelayFrame::IdentityBundle { username, bundle } => (username, bundle),
            f => panic!("expected identity_bundle, got {f:?}"),
        }
    };
    let (status, http) = relay.get_json("/v1/users/bob").await;
    assert_eq!(status, 200, "{http}");
    for binary in [false, true] {
        let (mut a, _) = alice.connect(&relay).await;
        a.binary = binary;
        let (name, bundle) = identity(&mut a, "BOB").await;
        assert_eq!(name, registered.username);
        assert_eq!(bundle, registered.bundle);
        assert_eq!(
            PublicBundle::from_bytes(bundle.as_slice())
                .unwrap()
                .fingerprint()
                .to_hex(),
            http["fingerprint"]
        );
        a.send(&ask("nobody")).await;
        a.expect_error("not_found").await;
    }

    // After bob rotates his keys, the new bundle.
    let bob2 = User::new("bob", mode);
    let new_fp = bob2.identity.fingerprint();
    let content = rotation_content(&bob.name, 0, &bob.identity.fingerprint(), &new_fp);
    let rotate = RotateKeysRequest {
        bundle: Bytes(bob2.identity.public_bundle().to_bytes()),
        crypto_mode: mode,
        key_version: 0,
        signature: Bytes(bob.sign(mode, SigContext::KeyRotation, &content)),
        new_signature: Bytes(bob2.sign(mode, SigContext::KeyRotation, &content)),
    };
    let (status, body) = relay.put_json("/v1/users/bob/keys", &rotate).await;
    assert_eq!(status, 200, "{body}");
    let (mut a, _) = alice.connect(&relay).await;
    let (_, bundle) = identity(&mut a, "bob").await;
    assert_eq!(bundle.0, bob2.identity.public_bundle().to_bytes());

    let mut anon = relay.connect().await;
    anon.send(&ask("bob")).await;
    anon.expect_error("unauthorized").await;
}

/// Every refusal has its code, and a refused upload stores nothing.
#[tokio::test]
async fn uploads_and_claims_are_checked() {
    let cfg = Config::new().set("security", "minimum_crypto_mode", "\"hybrid\"");
    let relay = Relay::start(&cfg).await;
    let alice = User::new("alice", CryptoMode::Hybrid);
    let bob = User::new("bob", CryptoMode::Hybrid);
    let mallory = User::new("mallory", CryptoMode::Hybrid);
    for u in [&alice, &bob, &mallory] {
        u.register(&relay).await;
    }
    let mode = CryptoMode::Hybrid;
    let (signed, one_time) = prekeys(&bob, mode, 1, 1, 2);

    // Not logged in.
    let mut anon = relay.connect().await;
    anon.send(&upload(mode, &bob, Some(&signed), &one_time))
        .await;
    anon.expect_error("unauthorized").await;
    anon.send(&get("bob", mode)).await;
    anon.expect_error("unauthorized").await;

    // Mallory cannot publish bob's records as hers: the signatures are bob's.
    let (mut m, _) = mallory.connect(&relay).await;
    m.send(&upload(mode, &bob, Some(&signed), &one_time)).await;
    m.expect_error("invalid_signature").await;
    // Her own record, signed over another batch than the one uploaded with it.
    let (hers, batch) = prekeys(&mallory, mode, 1, 1, 2);
    let (_, other) = prekeys(&mallory, mode, 1, 1, 2);
    let mut swapped = upload(mode, &mallory, Some(&hers), &batch);
    if let ClientFrame::UploadPrekeys {
        one_time_prekeys, ..
    } = &mut swapped
    {
        *one_time_prekeys = other.publics().map(|p| Bytes(p.to_bytes())).collect();
    }
    m.send(&swapped).await;
    m.expect_error("invalid_signature").await;
    // One prekey fewer than the root covers.
    let mut short = upload(mode, &mallory, Some(&hers), &batch);
    if let ClientFrame::UploadPrekeys {
        one_time_prekeys, ..
    } = &mut short
    {
        one_time_prekeys.pop();
    }
    m.send(&short).await;
    m.expect_error("invalid_signature").await;
    // Records of another mode than the upload names.
    let (q_signed, _) = prekeys(&mallory, CryptoMode::Quantum, 1, 1, 0);
    m.send(&upload(
        mode,
        &mallory,
        Some(&q_signed),
        &OneTimePrekeys::empty(mode),
    ))
    .await;
    m.expect_error("mode_mismatch").await;
    // Bytes that are no record; a record with a flipped signature byte.
    m.send(&ClientFrame::UploadPrekeys {
        crypto_mode: mode,
        signed_prekeys: Some(Bytes(vec![2, 0, 0, 0, 1, 9, 9])),
        one_time_prekeys: vec![],
        replace_one_time: false,
    })
    .await;
    m.expect_error("invalid_key").await;
    let (mine, _) = prekeys(&mallory, mode, 1, 1, 0);
    let mut forged = mine
        .certify(&mallory.identity, None, &mut OsRng)
        .unwrap()
        .to_bytes();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    m.send(&ClientFrame::UploadPrekeys {
        crypto_mode: mode,
        signed_prekeys: Some(Bytes(forged)),
        one_time_prekeys: vec![],
        replace_one_time: false,
    })
    .await;
    m.expect_error("invalid_signature").await;
    // Below the relay's floor (refused before any signature is looked at).
    let classical = User::new("mallory", CryptoMode::Classical);
    let (c_signed, _) = prekeys(&classical, CryptoMode::Classical, 1, 1, 0);
    m.send(&upload(
        CryptoMode::Classical,
        &classical,
        Some(&c_signed),
        &OneTimePrekeys::empty(CryptoMode::Classical),
    ))
    .await;
    m.expect_error("mode_not_allowed").await;
    // Nothing of all that was stored.
    m.send(&get("mallory", mode)).await;
    m.expect_error("no_prekeys").await;

    // Claims: unknown user, no prekeys, under the floor.
    let (mut a, _) = alice.connect(&relay).await;
    a.send(&get("nobody", mode)).await;
    a.expect_error("not_found").await;
    a.send(&get("bob", mode)).await;
    a.expect_error("no_prekeys").await;
    a.send(&get("bob", CryptoMode::Classical)).await;
    a.expect_error("mode_not_allowed").await;
}

/// Past `prekey_claim_burst`, a requester gets last-resort bundles: the remaining one-time
/// prekeys stay for others.
#[tokio::test]
async fn claims_are_rate_limited_per_requester() {
    let cfg = Config::new()
        .set("security", "prekey_claims_per_second", 1)
        .set("security", "prekey_claim_burst", 2);
    let relay = Relay::start(&cfg).await;
    let users: Vec<User> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| User::new(n, CryptoMode::Classical))
        .collect();
    for u in &users {
        u.register(&relay).await;
    }
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let mode = CryptoMode::Classical;
    let (signed, one_time) = prekeys(bob, mode, 1, 1, 10);
    let (mut b, _) = bob.connect(&relay).await;
    b.send(&upload(mode, bob, Some(&signed), &one_time)).await;
    assert_eq!(expect_uploaded(&mut b, mode).await, 10);

    let (mut a, _) = alice.connect(&relay).await;
    let mut with_one_time = 0;
    for _ in 0..5 {
        if get_bundle(&mut a, bob, mode).await.one_time().is_some() {
            with_one_time += 1;
        }
    }
    // The burst of 2, and at most a few refills while the test runs (1 per second).
    assert!(
        (2..=3).contains(&with_one_time),
        "{with_one_time} one-time prekeys in 5 quick claims"
    );
    // Another requester has a budget of its own.
    let (mut c, _) = carol.connect(&relay).await;
    assert!(get_bundle(&mut c, bob, mode).await.one_time().is_some());
}

/// A new signed-prekeys record is served at once by every relay sharing the database and the
/// L2 cache, though each had the old one cached.
#[tokio::test]
async fn a_new_signed_prekeys_record_reaches_every_relay() {
    let test = "a_new_signed_prekeys_record_reaches_every_relay";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let Some(db) = PgDb::create(test) else {
        return;
    };
    let prefix = redis_prefix();
    let cfg = Config::new().storage_url(&db.url).l2(&redis, &prefix).set(
        "caching",
        "l1_cache_ttl_seconds",
        600,
    );
    let relay_a = Relay::start(&cfg).await;
    let relay_b = Relay::start(&cfg).await;
    wait_for_subscribers(&redis, &format!("{prefix}invalidate"), 2).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    alice.register(&relay_a).await;
    bob.register(&relay_a).await;
    let mode = CryptoMode::Quantum;
    let (mut b, _) = bob.connect(&relay_a).await;
    let (first, none) = prekeys(&bob, mode, 1, 1, 0);
    b.send(&upload(mode, &bob, Some(&first), &none)).await;
    expect_uploaded(&mut b, mode).await;

    let (mut on_b, _) = alice.connect(&relay_b).await;
    let (mut on_a, _) = alice.connect(&relay_a).await;
    for ws in [&mut on_a, &mut on_b] {
        // Twice: the second answer comes from the caches.
        for _ in 0..2 {
            assert_eq!(get_bundle(ws, &bob, mode).await.signed().id(), 1);
        }
    }
    let (second, _) = prekeys(&bob, mode, 2, 1, 0);
    b.send(&upload(mode, &bob, Some(&second), &none)).await;
    expect_uploaded(&mut b, mode).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(get_bundle(ws, &bob, mode).await.signed().id(), 2);
    }
}
