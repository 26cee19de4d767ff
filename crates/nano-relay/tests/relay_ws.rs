//! The relay's WebSocket protocol end to end, against the real binary: registration, auth,
//! store-and-forward with push, acks and reads, the inbox on login, deduplication, the binary
//! encoding, key exchange in every mode, the relay's crypto floor, and two relays sharing
//! PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::collections::HashSet;

use nano_crypto::channel::{channel_key, verify_confirmation};
use nano_crypto::{CryptoMode, KemPublicKey, OsRng, PublicBundle, SigContext, Signature};
use nano_proto::frames::MAX_SAFE_INTEGER;
use nano_proto::rest::{RotateKeysRequest, rotation_content};
use nano_proto::signed::key_exchange_content;
use nano_proto::{Bytes, ClientFrame, MessageId, Payload, RelayFrame};
use relay_common::{
    Config, Fetched, PgDb, Received, Relay, User, metric, random_id, redis_cleanup, redis_prefix,
    redis_url, send_frame, start_with_alice_and_bob, wait_for_subscribers,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap())
        .unwrap()
}

/// register → auth → send → push → ack; acked messages are gone on re-fetch and on reconnect.
async fn main_flow(cfg: Config) {
    let (relay, alice, bob) = start_with_alice_and_bob(&cfg).await;

    let (mut b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 0);
    assert!(login.msgs.is_empty());
    assert_eq!(
        login.fetched,
        Fetched {
            count: 0,
            last_seq: None,
            more: false
        }
    );

    let (mut a, _) = alice.connect(&relay).await;
    let ids: Vec<MessageId> = (0..3).map(|_| random_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            a.send_message(
                "bob",
                &format!("sealed payload {i}"),
                CryptoMode::Hybrid,
                Some(*id)
            )
            .await,
            (*id, false)
        );
    }
    let mut pushed = Vec::new();
    for _ in 0..3 {
        pushed.push(b.expect_message().await);
    }
    assert_eq!(pushed.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    for (i, m) in pushed.iter().enumerate() {
        assert_eq!(m.sender.as_deref(), Some("alice"));
        assert_eq!(m.mode, CryptoMode::Hybrid);
        assert_eq!(m.message, format!("sealed payload {i}"));
        assert!(m.timestamp_ms > 0);
    }
    assert!(pushed.windows(2).all(|w| w[0].seq < w[1].seq), "{pushed:?}");

    // Ack the first two: a fetch from the start returns only the third, exactly as pushed.
    b.ack(ids[..2].to_vec()).await;
    let (msgs, f) = b.fetch(Some(0), None).await;
    assert_eq!(msgs, vec![pushed[2].clone()]);
    assert_eq!(
        f,
        Fetched {
            count: 1,
            last_seq: Some(pushed[2].seq),
            more: false
        }
    );

    // A reconnect streams only the unacked message.
    b.close().await;
    let (mut b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 1);
    assert_eq!(login.msgs, vec![pushed[2].clone()]);
    b.ack(vec![ids[2]]).await;
    let (msgs, f) = b.fetch(Some(0), None).await;
    assert!(msgs.is_empty(), "{msgs:?}");
    assert_eq!(f.count, 0);
    b.close().await;
    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 0);
    assert!(login.msgs.is_empty(), "{:?}", login.msgs);
}

on_each_storage!(main_flow: main_flow_sqlite, main_flow_postgres);

#[tokio::test]
async fn offline_recipient_gets_its_inbox_in_order_on_auth() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;

    // 120 messages, pipelined, while bob is offline: more than one page (100).
    let (mut a, _) = alice.connect(&relay).await;
    let ids: Vec<MessageId> = (0..120).map(|_| random_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        a.feed(&send_frame(
            "bob",
            &format!("m{i}"),
            CryptoMode::Classical,
            Some(*id),
        ))
        .await;
    }
    a.flush().await;
    for id in &ids {
        assert_eq!(a.expect_sent().await, (*id, false));
    }

    let (mut b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 120);
    assert_eq!(login.msgs.len(), 100);
    assert_eq!(login.fetched.count, 100);
    assert!(login.fetched.more);
    assert_eq!(login.fetched.last_seq, Some(login.msgs[99].seq));
    let (rest, f) = b.fetch(login.fetched.last_seq, None).await;
    assert_eq!(rest.len(), 20);
    assert!(!f.more);
    let all: Vec<_> = login.msgs.iter().chain(&rest).collect();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.message, format!("m{i}"));
        assert_eq!(m.sender.as_deref(), Some("alice"));
    }
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

    // Caught up: the next message is pushed.
    let id = random_id();
    assert_eq!(
        a.send_message("bob", "live", CryptoMode::Classical, Some(id))
            .await,
        (id, false)
    );
    let m = b.expect_message().await;
    assert_eq!(
        (m.id, &m.message),
        (id, &Received(Payload::from_json_text("live")))
    );

    // A page size is honoured, and says more are waiting.
    let (page, f) = b.fetch(Some(0), Some(2)).await;
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(
        f,
        Fetched {
            count: 2,
            last_seq: Some(page[1].seq),
            more: true
        }
    );
}

#[tokio::test]
async fn the_guides_frames_work_as_written() {
    let relay = Relay::start(&Config::new()).await;
    let user = User::new("user_42", CryptoMode::Classical);
    user.register(&relay).await;

    let mut anon = relay.connect().await;
    anon.send_text(
        r#"{"type":"send_message","recipient":"user_42","message":"…","crypto_mode":"hybrid"}"#,
    )
    .await;
    let (id, duplicate) = anon.expect_sent().await;
    assert!(!duplicate);
    anon.send_text(r#"{"type":"key_exchange","crypto_mode":"hybrid"}"#)
        .await;
    match anon.recv().await {
        RelayFrame::KeyExchange {
            crypto_mode,
            public_key,
            ..
        } => {
            assert_eq!(crypto_mode, CryptoMode::Hybrid);
            assert!(KemPublicKey::from_bytes(CryptoMode::Hybrid, public_key.as_slice()).is_ok());
        }
        f => panic!("expected key_exchange, got {f:?}"),
    }

    let (_ws, login) = user.connect(&relay).await;
    assert_eq!(login.pending, 1);
    let m = &login.msgs[0];
    assert_eq!(m.id, id);
    assert_eq!(m.message, "…");
    assert_eq!(m.mode, CryptoMode::Hybrid);
    assert_eq!(m.sender, None, "anonymous sends carry no sender");
}

#[tokio::test]
async fn minimum_crypto_mode_is_enforced() {
    let relay =
        Relay::start(&Config::new().set("security", "minimum_crypto_mode", "\"hybrid\"")).await;
    let info = relay.info().await;
    assert_eq!(info.minimum_crypto_mode, CryptoMode::Hybrid);
    assert_eq!(info.modes, vec![CryptoMode::Hybrid, CryptoMode::Quantum]);

    // A bundle that accepts classical is refused, signed classically or not: it would invite
    // senders below the relay's floor.
    let classical_alice = User::new("alice", CryptoMode::Classical);
    for signed in [CryptoMode::Classical, CryptoMode::Hybrid] {
        let (status, body) = relay
            .post_json("/v1/users", &classical_alice.claim(signed))
            .await;
        assert_eq!(status, 403, "{signed}: {body}");
        assert_eq!(body["code"], "mode_not_allowed", "{signed}: {body}");
    }
    let alice = User::new("alice", CryptoMode::Hybrid);
    alice.register(&relay).await;
    let bob = User::new("bob", CryptoMode::Hybrid);
    bob.register(&relay).await;
    let quinn = User::new("quinn", CryptoMode::Quantum);
    quinn.register(&relay).await;

    // The relay signs no challenge below its floor; classical auth is refused; hybrid auth after
    // a new hello then succeeds.
    let mut a = relay.connect().await;
    a.hello(CryptoMode::Classical).await;
    a.expect_error("mode_not_allowed").await;
    let ch = a.challenge().await;
    a.send(&classical_alice.auth(CryptoMode::Classical, &ch))
        .await;
    match a.recv().await {
        RelayFrame::Error { code, .. } => assert!(
            matches!(code.as_str(), "mode_not_allowed" | "auth_failed"),
            "{code}"
        ),
        f => panic!("expected an error, got {f:?}"),
    }
    let ch = a.challenge().await;
    alice.login_with(&mut a, CryptoMode::Hybrid, &ch).await;

    // Classical sends are refused, authenticated or not; so is a classical key exchange.
    let id = random_id();
    a.send(&send_frame("bob", "x", CryptoMode::Classical, Some(id)))
        .await;
    assert_eq!(a.expect_error("mode_not_allowed").await.1, Some(id));
    let mut anon = relay.connect().await;
    anon.send(&send_frame("bob", "x", CryptoMode::Classical, None))
        .await;
    anon.expect_error("mode_not_allowed").await;
    anon.send(&ClientFrame::KeyExchange {
        crypto_mode: CryptoMode::Classical,
        key_id: None,
        ciphertext: None,
    })
    .await;
    anon.expect_error("mode_not_allowed").await;

    // The recipient's own floor counts too: quinn takes quantum only.
    a.send(&send_frame("quinn", "x", CryptoMode::Hybrid, None))
        .await;
    a.expect_error("mode_not_allowed").await;
    let q = random_id();
    assert_eq!(
        a.send_message("quinn", "q", CryptoMode::Quantum, Some(q))
            .await,
        (q, false)
    );

    // Hybrid goes through; bob receives only that one.
    let h = random_id();
    assert_eq!(
        a.send_message("bob", "h", CryptoMode::Hybrid, Some(h))
            .await,
        (h, false)
    );
    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(login.msgs.iter().map(|m| m.id).collect::<Vec<_>>(), vec![h]);
}

#[tokio::test]
async fn a_repeated_id_is_stored_once() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut a, _) = alice.connect(&relay).await;

    // Offline recipient: one after the other, pipelined, and from another (anonymous) sender.
    let (x, y) = (random_id(), random_id());
    let fx = send_frame("bob", "x", CryptoMode::Hybrid, Some(x));
    a.send(&fx).await;
    assert_eq!(a.expect_sent().await, (x, false));
    a.send(&fx).await;
    assert_eq!(a.expect_sent().await, (x, true));
    let fy = send_frame("bob", "y", CryptoMode::Hybrid, Some(y));
    a.feed(&fy).await;
    a.feed(&fy).await;
    a.flush().await;
    assert_eq!(a.expect_sent().await, (y, false));
    assert_eq!(a.expect_sent().await, (y, true));
    let mut anon = relay.connect().await;
    anon.send(&fx).await;
    assert_eq!(anon.expect_sent().await, (x, true));

    let (mut b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 2);
    assert_eq!(
        login.msgs.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![x, y]
    );

    // Online recipient: one push for a repeated id.
    let (z, w) = (random_id(), random_id());
    let fz = send_frame("bob", "z", CryptoMode::Hybrid, Some(z));
    a.send(&fz).await;
    assert_eq!(a.expect_sent().await, (z, false));
    a.send(&fz).await;
    assert_eq!(a.expect_sent().await, (z, true));
    assert_eq!(
        a.send_message("bob", "w", CryptoMode::Hybrid, Some(w))
            .await,
        (w, false)
    );
    assert_eq!(b.expect_message().await.id, z);
    assert_eq!(b.expect_message().await.id, w);
    let all = b.fetch_all(0).await;
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![x, y, z, w]
    );
}

#[tokio::test]
async fn binary_frames_work_end_to_end() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;

    let mut b = relay.connect().await;
    b.binary = true;
    let login = bob.login(&mut b, CryptoMode::Classical).await;
    assert!(b.last_binary, "a binary auth is answered in binary");
    assert_eq!(login.pending, 0);

    let mut a = relay.connect().await;
    a.binary = true;
    alice.login(&mut a, CryptoMode::Quantum).await;
    let id = random_id();
    assert_eq!(
        a.send_message("bob", "binary payload", CryptoMode::Quantum, Some(id))
            .await,
        (id, false)
    );
    assert!(a.last_binary);

    let m = b.expect_message().await;
    assert!(b.last_binary, "pushes follow the connection's encoding");
    assert_eq!(m.id, id);
    assert_eq!(m.message, "binary payload");
    assert_eq!(m.mode, CryptoMode::Quantum);
    assert_eq!(m.sender.as_deref(), Some("alice"));

    // Switching back to JSON switches the answers back.
    a.binary = false;
    let id2 = random_id();
    assert_eq!(
        a.send_message("bob", "json again", CryptoMode::Hybrid, Some(id2))
            .await,
        (id2, false)
    );
    assert!(!a.last_binary);
    assert_eq!(b.expect_message().await.id, id2);
    assert!(b.last_binary);

    // A binary fetch pages the inbox in binary; binary `read` and `ack` are handled (no
    // answer), and the acked messages are gone.
    let (msgs, f) = b.fetch(Some(0), Some(10)).await;
    assert!(b.last_binary);
    assert_eq!(msgs.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id, id2]);
    assert_eq!(f.count, 2);
    b.send(&ClientFrame::Read { ids: vec![id] }).await;
    b.ack(vec![id, id2]).await;
    let (msgs, f) = b.fetch(Some(0), Some(10)).await;
    assert!(b.last_binary);
    assert!(msgs.is_empty(), "{msgs:?}");
    assert_eq!(f.count, 0);
}

/// Offer (signed by the relay identity) → encapsulation → confirmation, in every mode.
async fn key_exchange_round_trip(cfg: Config) {
    let relay = Relay::start(&cfg).await;
    let info = relay.info().await;
    let relay_bundle = PublicBundle::from_bytes(info.identity.as_slice()).unwrap();
    assert_eq!(relay_bundle.fingerprint().to_hex(), info.relay_id);

    let mut ws = relay.connect().await;
    let ch = ws.challenge().await;
    assert_eq!(ch.relay_id, info.relay_id);
    for mode in CryptoMode::ALL {
        ws.send(&ClientFrame::KeyExchange {
            crypto_mode: mode,
            key_id: None,
            ciphertext: None,
        })
        .await;
        let (key_id, public_key, signature, expires_at_ms) = match ws.recv().await {
            RelayFrame::KeyExchange {
                crypto_mode,
                key_id,
                public_key,
                signature,
                expires_at_ms,
            } => {
                assert_eq!(crypto_mode, mode);
                (key_id, public_key, signature, expires_at_ms)
            }
            f => panic!("{mode}: expected key_exchange, got {f:?}"),
        };
        assert!(key_id <= MAX_SAFE_INTEGER);
        assert!(
            expires_at_ms > now_ms(),
            "{mode}: the key is already expired"
        );

        // Signed by the relay's identity key of that mode, over exactly these fields.
        let vk = relay_bundle.verifying_key(mode).unwrap();
        let sig = Signature::from_bytes(mode, signature.as_slice()).unwrap();
        let content = key_exchange_content(mode, key_id, expires_at_ms, public_key.as_slice());
        vk.verify(SigContext::RelayKeyExchange, &content, &sig)
            .unwrap_or_else(|e| panic!("{mode}: relay signature does not verify: {e}"));
        let other = key_exchange_content(mode, key_id, expires_at_ms + 1, public_key.as_slice());
        assert!(
            vk.verify(SigContext::RelayKeyExchange, &other, &sig)
                .is_err()
        );

        // Complete it; the confirmation proves the relay derived the same channel key.
        let pk = KemPublicKey::from_bytes(mode, public_key.as_slice()).unwrap();
        let (ct, shared) = pk.encapsulate(&mut OsRng).unwrap();
        let complete = ClientFrame::KeyExchange {
            crypto_mode: mode,
            key_id: Some(key_id),
            ciphertext: Some(Bytes(ct.as_bytes().to_vec())),
        };
        ws.send(&complete).await;
        match ws.recv().await {
            RelayFrame::KeyExchangeOk {
                key_id: k,
                confirmation,
            } => {
                assert_eq!(k, key_id);
                let key = channel_key(&shared, mode, key_id, &pk, &ct).unwrap();
                verify_confirmation(&key, key_id, confirmation.as_slice())
                    .unwrap_or_else(|e| panic!("{mode}: bad confirmation: {e}"));
                let (_, other_shared) = pk.encapsulate(&mut OsRng).unwrap();
                let wrong = channel_key(&other_shared, mode, key_id, &pk, &ct).unwrap();
                assert!(verify_confirmation(&wrong, key_id, confirmation.as_slice()).is_err());
            }
            f => panic!("{mode}: expected key_exchange_ok, got {f:?}"),
        }
        // The offer is spent on this connection.
        ws.send(&complete).await;
        ws.expect_error("invalid_field").await;
    }
}

#[tokio::test]
async fn key_exchange_round_trip_in_each_mode() {
    key_exchange_round_trip(Config::new()).await;
}

#[tokio::test]
async fn key_exchange_round_trip_from_the_key_pool_without_key_caching() {
    key_exchange_round_trip(
        Config::new()
            .set("memory", "enable_memory_pools", true)
            .set("memory", "key_pool_size", 6)
            .set("memory", "message_pool_size", 16)
            .set("performance", "enable_key_caching", false),
    )
    .await;
}

/// The guide's key-exchange flow (no login, no hello) against a key past its signed
/// `expires_at_ms`: refused `key_expired`; a new offer completes.
#[tokio::test]
async fn a_key_exchange_key_is_refused_after_it_expires() {
    let relay = Relay::start(&Config::new().set("performance", "key_cache_ttl_seconds", 1)).await;
    let mut ws = relay.connect().await;
    let mode = CryptoMode::Hybrid;
    let ask = ClientFrame::KeyExchange {
        crypto_mode: mode,
        key_id: None,
        ciphertext: None,
    };
    // An offer (key id, public key, expiry), and the completion of `key_id` with a fresh
    // encapsulation to `public_key`.
    async fn offer(ws: &mut relay_common::Ws, ask: &ClientFrame) -> (u64, Bytes, u64) {
        ws.send(ask).await;
        match ws.recv().await {
            RelayFrame::KeyExchange {
                key_id,
                public_key,
                expires_at_ms,
                ..
            } => (key_id, public_key, expires_at_ms),
            f => panic!("expected key_exchange, got {f:?}"),
        }
    }
    async fn complete(ws: &mut relay_common::Ws, mode: CryptoMode, key_id: u64, pk: &Bytes) {
        let pk = KemPublicKey::from_bytes(mode, pk.as_slice()).unwrap();
        let (ct, _) = pk.encapsulate(&mut OsRng).unwrap();
        ws.send(&ClientFrame::KeyExchange {
            crypto_mode: mode,
            key_id: Some(key_id),
            ciphertext: Some(Bytes(ct.as_bytes().to_vec())),
        })
        .await;
    }
    let (key_id, public_key, expires_at_ms) = offer(&mut ws, &ask).await;
    assert!(expires_at_ms <= now_ms() + 1_000, "a 1 s key lives longer");
    // Wait (bounded: at most the key's 1 s) until it has expired.
    while now_ms() <= expires_at_ms {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    complete(&mut ws, mode, key_id, &public_key).await;
    ws.expect_error("key_expired").await;
    // The next request gets a fresh key that completes.
    let (key_id, public_key, expires_at_ms) = offer(&mut ws, &ask).await;
    assert!(expires_at_ms > now_ms());
    complete(&mut ws, mode, key_id, &public_key).await;
    assert!(matches!(ws.recv().await, RelayFrame::KeyExchangeOk { .. }));
}

#[tokio::test]
async fn read_marks_without_removing() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut b, _) = bob.connect(&relay).await;
    let (mut a, _) = alice.connect(&relay).await;
    let id = random_id();
    a.send_message("bob", "to read", CryptoMode::Hybrid, Some(id))
        .await;
    let pushed = b.expect_message().await;

    // `read` has no answer; the next frame is the fetch's page, which still holds the message.
    b.send(&ClientFrame::Read { ids: vec![id] }).await;
    let (msgs, _) = b.fetch(Some(0), None).await;
    assert_eq!(msgs, vec![pushed]);
    b.close().await;
    let (mut b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 1, "a read message stays until acked");
    assert_eq!(login.msgs[0].id, id);
    b.ack(vec![id]).await;
    assert!(b.fetch(Some(0), None).await.0.is_empty());
}

#[tokio::test]
async fn one_user_receives_in_all_three_modes() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut b, _) = bob.connect(&relay).await;
    let (mut a, _) = alice.connect(&relay).await;
    for mode in CryptoMode::ALL {
        let id = random_id();
        assert_eq!(
            a.send_message("bob", mode.as_str(), mode, Some(id)).await,
            (id, false)
        );
        let m = b.expect_message().await;
        assert_eq!((m.id, m.mode), (id, mode));
        assert_eq!(m.message, mode.as_str());
    }
    let metrics = relay.metrics().await;
    for mode in CryptoMode::ALL {
        let series = format!(
            "nano_messenger_messages_processed_total{{crypto_mode=\"{}\"}}",
            mode.as_str()
        );
        assert_eq!(metric(&metrics, &series), Some(1.0), "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn two_relays_share_postgres_and_redis() {
    let test = "two_relays_share_postgres_and_redis";
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
    wait_for_subscribers(&redis, &format!("{prefix}deliver"), 2).await;

    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    alice.register(&relay_a).await;
    bob.register(&relay_b).await;

    // A message sent through A to bob, connected on B, is pushed to bob's session on B.
    let (mut b, _) = bob.connect(&relay_b).await;
    let (mut a, _) = alice.connect(&relay_a).await;
    let id = random_id();
    assert_eq!(
        a.send_message("bob", "across relays", CryptoMode::Hybrid, Some(id))
            .await,
        (id, false)
    );
    let m = b.expect_message().await;
    assert_eq!(m.id, id);
    assert_eq!(m.message, "across relays");
    assert_eq!(m.sender.as_deref(), Some("alice"));
    // And back the other way.
    let back = random_id();
    assert_eq!(
        b.send_message("alice", "reply", CryptoMode::Hybrid, Some(back))
            .await,
        (back, false)
    );
    assert_eq!(a.expect_message().await.id, back);

    // A key rotation through A is served by B (whose caches held the old bundle).
    let (status, before) = relay_b.get_json("/v1/users/alice").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["fingerprint"], alice.identity.fingerprint().to_hex());
    let alice2 = User::new("alice", CryptoMode::Classical);
    let new_fp = alice2.identity.fingerprint();
    let content = rotation_content(&alice.name, 0, &alice.identity.fingerprint(), &new_fp);
    let rotate = RotateKeysRequest {
        bundle: Bytes(alice2.identity.public_bundle().to_bytes()),
        crypto_mode: CryptoMode::Classical,
        key_version: 0,
        signature: Bytes(alice.sign(CryptoMode::Classical, SigContext::KeyRotation, &content)),
        new_signature: Bytes(alice2.sign(CryptoMode::Classical, SigContext::KeyRotation, &content)),
    };
    let (status, body) = relay_a.put_json("/v1/users/alice/keys", &rotate).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fingerprint"], new_fp.to_hex());
    let deadline = tokio::time::Instant::now() + relay_common::WAIT;
    loop {
        let (status, body) = relay_b.get_json("/v1/users/alice").await;
        assert_eq!(status, 200, "{body}");
        if body["fingerprint"] == new_fp.to_hex() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay B still serves the old bundle: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // B now authenticates the new key.
    let (_a2, _) = alice2.connect(&relay_b).await;
    redis_cleanup(&redis, &prefix).await;
}

/// Payloads are opaque: every string the frame formats can carry comes back byte for byte.
async fn payloads_round_trip_verbatim(cfg: Config) {
    const MAX_MESSAGE: usize = nano_proto::MAX_MESSAGE_BYTES;
    let relay = Relay::start(&cfg).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    let binbob = User::new("binbob", CryptoMode::Classical);
    for u in [&alice, &bob, &binbob] {
        u.register(&relay).await;
    }
    let (mut b, _) = bob.connect(&relay).await;
    let mut bb = relay.connect().await;
    bb.binary = true;
    binbob.login(&mut bb, CryptoMode::Classical).await;
    let (mut a, _) = alice.connect(&relay).await;

    let payloads = [
        String::new(),
        "quote \" backslash \\ newline \n tab \t".to_owned(),
        "control \u{1}\u{1f}\u{7f}".to_owned(),
        "non-ASCII é 中文 😀".to_owned(),
        "nul \u{0} inside".to_owned(),
        "m".repeat(MAX_MESSAGE),
    ];
    for binary in [false, true] {
        a.binary = binary;
        for p in &payloads {
            for (to, ws) in [("bob", &mut b), ("binbob", &mut bb)] {
                let id = random_id();
                a.send(&send_frame(to, p, CryptoMode::Hybrid, Some(id)))
                    .await;
                match a.recv().await {
                    RelayFrame::Sent { id: got, duplicate } => {
                        assert_eq!((got, duplicate), (id, false));
                    }
                    f => panic!(
                        "payload {:?} (binary {binary}) to {to}: expected sent, got {f:?}",
                        &p[..p.len().min(20)]
                    ),
                }
                let m = ws.expect_message().await;
                assert_eq!(m.id, id);
                assert!(m.message == *p, "{to}: payload changed (binary {binary})");
            }
        }
    }
    // Stored verbatim too: a reconnect streams the same strings.
    let (_b, login) = bob.connect(&relay).await;
    let expected: Vec<Payload> = payloads
        .iter()
        .chain(&payloads)
        .map(|p| Payload::from_json_text(p))
        .collect();
    let got: Vec<Payload> = login.msgs.iter().map(|m| m.message.0.clone()).collect();
    assert!(
        got == expected,
        "the stored payloads differ from the sent ones"
    );
}

on_each_storage!(payloads_round_trip_verbatim: payloads_round_trip_verbatim_sqlite, payloads_round_trip_verbatim_postgres);

#[tokio::test]
async fn payloads_round_trip_verbatim_with_memory_pools() {
    payloads_round_trip_verbatim(
        Config::new()
            .set("memory", "enable_memory_pools", true)
            .set("memory", "message_pool_size", 4),
    )
    .await;
}

#[tokio::test]
async fn a_full_inbox_refuses_with_inbox_full() {
    let relay = Relay::start(&Config::new().set("limits", "inbox_quota", 3)).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    let carol = User::new("carol", CryptoMode::Classical);
    for u in [&alice, &bob, &carol] {
        u.register(&relay).await;
    }
    let (mut a, _) = alice.connect(&relay).await;
    let ids: Vec<MessageId> = (0..5).map(|_| random_id()).collect();
    for id in &ids {
        a.feed(&send_frame("bob", "m", CryptoMode::Hybrid, Some(*id)))
            .await;
    }
    a.flush().await;
    for id in &ids[..3] {
        assert_eq!(a.expect_sent().await, (*id, false));
    }
    for id in &ids[3..] {
        assert_eq!(a.expect_error("inbox_full").await.1, Some(*id));
    }
    // A repeat of a stored id is still a duplicate, not a quota refusal.
    assert_eq!(
        a.send_message("bob", "m", CryptoMode::Hybrid, Some(ids[0]))
            .await,
        (ids[0], true)
    );
    // The quota is per inbox.
    let c = random_id();
    assert_eq!(
        a.send_message("carol", "m", CryptoMode::Hybrid, Some(c))
            .await,
        (c, false)
    );

    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(login.pending, 3);
    assert_eq!(
        login.msgs.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
}

#[tokio::test]
async fn every_session_of_a_user_gets_the_push() {
    let (relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut b1, _) = bob.connect(&relay).await;
    let (mut b2, _) = bob.connect(&relay).await;
    let (mut a, _) = alice.connect(&relay).await;
    let id = random_id();
    a.send_message("bob", "to both", CryptoMode::Hybrid, Some(id))
        .await;
    assert_eq!(b1.expect_message().await.id, id);
    assert_eq!(b2.expect_message().await.id, id);

    // One session leaving does not stop delivery to the other.
    b1.close().await;
    let id2 = random_id();
    a.send_message("bob", "to one", CryptoMode::Hybrid, Some(id2))
        .await;
    assert_eq!(b2.expect_message().await.id, id2);
}

#[tokio::test]
async fn anonymous_sends_can_be_turned_off() {
    let relay = Relay::start(&Config::new().set("security", "allow_anonymous_send", false)).await;
    assert!(!relay.info().await.allow_anonymous_send);
    let alice = User::new("alice", CryptoMode::Classical);
    let bob = User::new("bob", CryptoMode::Classical);
    alice.register(&relay).await;
    bob.register(&relay).await;
    let mut ws = relay.connect().await;
    let ch = ws.challenge().await;
    let id = random_id();
    ws.send(&send_frame(
        "bob",
        "anonymous",
        CryptoMode::Hybrid,
        Some(id),
    ))
    .await;
    assert_eq!(ws.expect_error("unauthorized").await.1, Some(id));
    alice.login_with(&mut ws, CryptoMode::Classical, &ch).await;
    assert_eq!(
        ws.send_message("bob", "signed", CryptoMode::Hybrid, Some(id))
            .await,
        (id, false)
    );
    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(login.msgs.len(), 1);
    assert_eq!(login.msgs[0].sender.as_deref(), Some("alice"));
}

/// Another sender's payload that no store can take (U+0000) is refused as a client error and
/// never fails the messages committed alongside it.
async fn a_bad_payload_does_not_fail_other_messages(cfg: Config) {
    const EACH: usize = 40;
    let (relay, alice, bob) = start_with_alice_and_bob(&cfg).await;
    let (mut a, _) = alice.connect(&relay).await;
    let mut m = relay.connect().await;

    let good: Vec<MessageId> = (0..EACH).map(|_| random_id()).collect();
    let bad: Vec<MessageId> = (0..EACH).map(|_| random_id()).collect();
    // Interleaved, each frame flushed at once: the two senders' messages reach the batch
    // writer together.
    for i in 0..EACH {
        a.send(&send_frame(
            "bob",
            "good",
            CryptoMode::Hybrid,
            Some(good[i]),
        ))
        .await;
        // Made by hand: a conforming encoder refuses U+0000.
        let frame = send_frame("bob", "bad X", CryptoMode::Hybrid, Some(bad[i]));
        m.send_text(&frame.to_json().unwrap().replace("bad X", "bad \\u0000"))
            .await;
    }
    let mut refused_good = Vec::new();
    for id in &good {
        match a.recv().await {
            RelayFrame::Sent { id: got, .. } => assert_eq!(got, *id),
            RelayFrame::Error { code, id: got, .. } => {
                assert_eq!(got, Some(*id));
                refused_good.push(code.as_str());
            }
            f => panic!("expected sent, got {f:?}"),
        }
    }
    let mut stored_bad = Vec::new();
    let mut failed_bad = Vec::new();
    for id in &bad {
        match m.recv().await {
            RelayFrame::Sent { id: got, .. } => {
                assert_eq!(got, *id);
                stored_bad.push(got);
            }
            RelayFrame::Error { code, .. } => {
                if code.as_str() != "invalid_field" {
                    failed_bad.push(code.as_str());
                }
            }
            f => panic!("expected sent or error, got {f:?}"),
        }
    }
    assert!(
        refused_good.is_empty() && failed_bad.is_empty(),
        "{} of {EACH} good messages failed alongside another sender's payload ({:?}); \
         {} of {EACH} payloads with U+0000 were answered as relay failures ({:?})",
        refused_good.len(),
        refused_good.first(),
        failed_bad.len(),
        failed_bad.first()
    );
    let (_b, login) = bob.connect(&relay).await;
    let ids: HashSet<MessageId> = login.msgs.iter().map(|m| m.id).collect();
    assert!(good.iter().all(|id| ids.contains(id)));
    assert_eq!(ids.len(), EACH + stored_bad.len());
}

on_each_storage!(a_bad_payload_does_not_fail_other_messages: a_bad_payload_does_not_fail_other_messages_sqlite, a_bad_payload_does_not_fail_other_messages_postgres);

/// A real envelope from `from` to `to`, sealed in `mode`: (its base64, its sealed id).
fn envelope(from: &User, to: &User, mode: CryptoMode) -> (String, MessageId) {
    use base64::Engine;
    let bytes = nano_crypto::seal(
        &from.identity,
        to.identity.public_bundle(),
        b"sealed",
        mode,
        nano_crypto::AeadId::ChaCha20Poly1305,
    )
    .unwrap();
    let id = MessageId(
        nano_crypto::Envelope::from_bytes(&bytes)
            .unwrap()
            .header()
            .message_id,
    );
    (base64::engine::general_purpose::STANDARD.encode(bytes), id)
}

/// The relay judges a send by its envelope's clear header: the id is the sealed one (given or
/// not), a label that disagrees with the sealed mode is `mode_mismatch` (so a classical
/// envelope labelled hybrid cannot pass a hybrid floor), and a production relay refuses
/// payloads that are not envelopes.
#[tokio::test]
async fn sends_are_judged_by_their_envelope() {
    let cfg = Config::new()
        .set("security", "minimum_crypto_mode", "\"hybrid\"")
        .set("security", "allow_opaque_payloads", false);
    let relay = Relay::start(&cfg).await;
    assert!(!relay.info().await.allow_opaque_payloads);
    assert_eq!(
        relay.info().await.max_message_bytes,
        nano_proto::MAX_MESSAGE_BYTES
    );
    let alice = User::new("alice", CryptoMode::Hybrid);
    alice.register(&relay).await;
    let bob = User::new("bob", CryptoMode::Hybrid);
    bob.register(&relay).await;
    // Classical keys: no bundle on this relay holds one, but the relay cannot check whom an
    // envelope is sealed for, so an attacker seals between two outside identities.
    let mallory = User::new("mallory", CryptoMode::Classical);
    let outsider = User::new("outsider", CryptoMode::Classical);
    let (mut a, _) = alice.connect(&relay).await;

    // Without an id, the relay takes the sealed one, and bob receives it under that id.
    let (msg, sealed) = envelope(&alice, &bob, CryptoMode::Hybrid);
    a.send(&send_frame("bob", &msg, CryptoMode::Hybrid, None))
        .await;
    assert_eq!(a.expect_sent().await, (sealed, false));
    // The same envelope again with its id is a duplicate.
    a.send(&send_frame("bob", &msg, CryptoMode::Hybrid, Some(sealed)))
        .await;
    assert_eq!(a.expect_sent().await, (sealed, true));

    // Another id, or another label, is refused and names the id given.
    let other = random_id();
    a.send(&send_frame("bob", &msg, CryptoMode::Hybrid, Some(other)))
        .await;
    assert_eq!(a.expect_error("id_mismatch").await.1, Some(other));
    a.send(&send_frame("bob", &msg, CryptoMode::Quantum, None))
        .await;
    a.expect_error("mode_mismatch").await;

    // A classical envelope labelled hybrid is caught by its header; labelled classical, by the
    // floor.
    let (low, low_id) = envelope(&mallory, &outsider, CryptoMode::Classical);
    a.send(&send_frame("bob", &low, CryptoMode::Hybrid, None))
        .await;
    a.expect_error("mode_mismatch").await;
    a.send(&send_frame("bob", &low, CryptoMode::Classical, None))
        .await;
    assert_eq!(a.expect_error("mode_not_allowed").await.1, Some(low_id));

    // Plain text is not an envelope.
    a.send(&send_frame("bob", "hello", CryptoMode::Hybrid, None))
        .await;
    a.expect_error("not_an_envelope").await;

    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(
        login
            .msgs
            .iter()
            .map(|m| (m.id, m.mode, m.message.0.clone()))
            .collect::<Vec<_>>(),
        vec![(sealed, CryptoMode::Hybrid, Payload::from_json_text(&msg))]
    );
}

/// A session handshake and message from `from` to `to` in `mode`, with the responder's
/// prekeys to open them.
fn session_pair(
    from: &User,
    to: &User,
    mode: CryptoMode,
) -> ([Payload; 2], nano_crypto::PrekeySecrets) {
    use nano_crypto::session::{
        OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SignedPrekeySecrets,
    };
    let mut r = nano_crypto::OsRng;
    let signed = SignedPrekeySecrets::generate(mode, 1, &mut r).unwrap();
    let bundle =
        PrekeyBundle::new(signed.certify(&to.identity, None, &mut r).unwrap(), None).unwrap();
    let secrets = PrekeySecrets::new(signed, OneTimePrekeys::empty(mode)).unwrap();
    let (mut s, hs) = Session::initiate(
        &from.identity,
        to.identity.public_bundle(),
        &bundle,
        nano_crypto::AeadId::Aes256Gcm,
        b"session hello",
        &mut r,
    )
    .unwrap();
    let m = s.encrypt(b"session again", &mut r).unwrap();
    ([Payload(hs), Payload(m)], secrets)
}

/// A `send_message` of a payload's raw bytes.
fn send_payload(to: &str, p: &Payload, mode: CryptoMode, id: Option<MessageId>) -> ClientFrame {
    ClientFrame::SendMessage {
        recipient: nano_proto::Username::new(to).unwrap(),
        message: p.clone(),
        crypto_mode: mode,
        id,
    }
}

/// Session handshakes and messages travel like envelopes: judged by their clear mode byte under
/// the floors, stored under the id their bytes give (a resend is a duplicate, another id is
/// `id_mismatch`), delivered intact (the recipient opens them).
#[tokio::test]
async fn session_payloads_are_stored_and_delivered_under_the_floor() {
    let cfg = Config::new()
        .set("security", "minimum_crypto_mode", "\"hybrid\"")
        .set("security", "allow_opaque_payloads", false);
    let relay = Relay::start(&cfg).await;
    let alice = User::new("alice", CryptoMode::Hybrid);
    alice.register(&relay).await;
    let bob = User::new("bob", CryptoMode::Hybrid);
    bob.register(&relay).await;
    let (mut a, _) = alice.connect(&relay).await;
    let ([hs, m], mut secrets) = session_pair(&alice, &bob, CryptoMode::Hybrid);
    let ids = [hs.session_message_id(), m.session_message_id()];
    a.binary = true;
    for (payload, id) in [(&hs, ids[0]), (&m, ids[1])] {
        a.send(&send_payload("bob", payload, CryptoMode::Hybrid, None))
            .await;
        assert_eq!(a.expect_sent().await, (id, false));
    }
    a.binary = false;
    a.send(&send_payload("bob", &hs, CryptoMode::Hybrid, Some(ids[0])))
        .await;
    assert_eq!(a.expect_sent().await, (ids[0], true));
    a.send(&send_payload(
        "bob",
        &m,
        CryptoMode::Hybrid,
        Some(random_id()),
    ))
    .await;
    a.expect_error("id_mismatch").await;
    // Labelled with another mode: refused by the header.
    a.send(&send_payload("bob", &m, CryptoMode::Quantum, None))
        .await;
    a.expect_error("mode_mismatch").await;
    // A classical session is below this relay's floor.
    let mallory = User::new("mallory", CryptoMode::Classical);
    let outsider = User::new("outsider", CryptoMode::Classical);
    let ([low, _], _) = session_pair(&mallory, &outsider, CryptoMode::Classical);
    a.send(&send_payload("bob", &low, CryptoMode::Classical, None))
        .await;
    a.expect_error("mode_not_allowed").await;

    let (_b, login) = bob.connect(&relay).await;
    let got: Vec<_> = login
        .msgs
        .iter()
        .map(|msg| (msg.id, msg.mode, msg.message.0.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], CryptoMode::Hybrid, hs.clone()),
            (ids[1], CryptoMode::Hybrid, m.clone())
        ]
    );
    let mut r = nano_crypto::OsRng;
    let mut opened = nano_crypto::Session::respond(
        &bob.identity,
        &mut secrets,
        alice.identity.public_bundle(),
        hs.as_slice(),
        &mut r,
    )
    .unwrap();
    assert_eq!(opened.plaintext, b"session hello");
    assert_eq!(
        opened.session.decrypt(m.as_slice(), &mut r).unwrap(),
        b"session again"
    );
}
