//! Hostile peers against the real binary: malformed, oversized and out-of-order frames on one
//! connection, each answered with its error code while the relay keeps serving; frames beyond
//! the transport limit; connections beyond `max_connections`; rate limits; and a slow reader
//! that never reads while messages are pushed to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use nano_crypto::{CryptoMode, Fingerprint, KemPublicKey, OsRng, SigContext};
use nano_proto::frames::MAX_SAFE_INTEGER;
use nano_proto::signed::auth_content;
use nano_proto::{Bytes, ClientFrame, MessageId, RelayFrame};
use relay_common::{
    Challenge, Config, Relay, User, Ws, metric, random_id, send_frame, start_with_alice_and_bob,
};
use tokio_tungstenite::tungstenite::Message;

/// The hostile relay's limits: small enough that every size rule is reachable cheaply.
const MAX_FRAME: usize = 65_536;
const MAX_MESSAGE: usize = 32_768;
/// Put in message payloads of hostile frames: no error message may echo it.
const MARKER: &str = "PAYLOAD-MARKER";

fn hostile_config() -> Config {
    Config::new()
        .set("limits", "max_frame_bytes", MAX_FRAME)
        .set("limits", "max_message_bytes", MAX_MESSAGE)
}

/// What one table row sends.
enum Input {
    /// A text message, sent as is.
    Text(String),
    /// A binary message, sent as is.
    Binary(Vec<u8>),
    /// An `auth` frame built against the connection's current challenge.
    Auth(AuthCase),
}

/// Ways to fail authentication; each spends the challenge (the next `hello` earns a new one).
enum AuthCase {
    /// alice's name and mode, a 10-byte signature.
    WrongLength,
    /// A well-formed answer by a user who never registered.
    UnknownUser,
    /// alice's name, signed by bob's key.
    OtherUsersKey,
    /// The auth frame alice sent on an earlier connection, replayed verbatim.
    Replay,
    /// alice's answer to the challenge this connection already spent.
    StaleNonce,
    /// alice's answer naming another relay.
    OtherRelay,
    /// quinn (quantum only) answering with a classical key.
    ModeNotHeld,
}

/// A table row: `case` over the connection's current challenge, refused with `auth_failed`.
fn auth_failed(what: &'static str, case: AuthCase) -> (&'static str, Input, &'static str) {
    (what, Input::Auth(case), "auth_failed")
}

fn text(v: serde_json::Value) -> Input {
    Input::Text(v.to_string())
}

fn hex_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| random_id().to_hex()).collect()
}

struct Actors {
    alice: User,
    bob: User,
    carol: User,
    quinn: User,
    replay: String,
}

/// Builds the frame for `case` against the current challenge `ch` (`spent` is the previous one).
fn auth_input(a: &Actors, case: &AuthCase, ch: &Challenge, spent: &Challenge) -> Message {
    let c = CryptoMode::Classical;
    let frame = match case {
        AuthCase::WrongLength => ClientFrame::Auth {
            username: a.alice.name.clone(),
            crypto_mode: c,
            signature: Bytes(vec![7; 10]),
        },
        AuthCase::UnknownUser => a.carol.auth(c, ch),
        AuthCase::OtherUsersKey => a.bob.auth_as(&a.alice.name, c, ch),
        AuthCase::Replay => return Message::text(a.replay.clone()),
        AuthCase::StaleNonce => a.alice.auth(c, spent),
        AuthCase::OtherRelay => {
            let content = auth_content(&Fingerprint([9; 32]), &ch.login(), &a.alice.name);
            ClientFrame::Auth {
                username: a.alice.name.clone(),
                crypto_mode: c,
                signature: Bytes(a.alice.sign(c, SigContext::RelayAuth, &content)),
            }
        }
        AuthCase::ModeNotHeld => a.bob.auth_as(&a.quinn.name, c, ch),
    };
    Message::text(frame.to_json().unwrap())
}

#[tokio::test]
async fn hostile_frames_are_answered_with_their_error_codes() {
    let relay = Relay::start(&hostile_config()).await;
    let actors = Actors {
        alice: User::new("alice", CryptoMode::Classical),
        bob: User::new("bob", CryptoMode::Classical),
        carol: User::new("carol", CryptoMode::Classical),
        quinn: User::new("quinn", CryptoMode::Quantum),
        replay: String::new(),
    };
    actors.alice.register(&relay).await;
    actors.bob.register(&relay).await;
    actors.quinn.register(&relay).await;

    // alice's auth frame on an earlier connection, kept for a replay.
    let mut earlier = relay.connect().await;
    let ch = earlier.challenge().await;
    let auth = actors.alice.auth(CryptoMode::Classical, &ch);
    let replay = auth.to_json().unwrap();
    earlier.send(&auth).await;
    assert!(matches!(earlier.recv().await, RelayFrame::AuthOk { .. }));
    earlier.close().await;
    let actors = Actors { replay, ..actors };

    // The hostile connection: unauthenticated, with one key-exchange offer outstanding.
    let mut h = relay.connect().await;
    let mut ch = h.challenge().await;
    let mut spent = ch.clone();
    h.send(&ClientFrame::KeyExchange {
        crypto_mode: CryptoMode::Classical,
        key_id: None,
        ciphertext: None,
    })
    .await;
    let (key_id, public_key) = match h.recv().await {
        RelayFrame::KeyExchange {
            key_id, public_key, ..
        } => (key_id, public_key),
        f => panic!("expected key_exchange, got {f:?}"),
    };
    let other_key_id = if key_id == MAX_SAFE_INTEGER {
        1
    } else {
        key_id + 1
    };

    let id = random_id();
    let big = "x".repeat(MAX_FRAME + 10_000);
    let cases: Vec<(&str, Input, &str)> = vec![
        // Sizes.
        (
            "text frame between 1x and 2x max_frame_bytes",
            text(serde_json::json!({"type":"send_message","recipient":"bob",
                "message": format!("{MARKER}{big}"),"crypto_mode":"classical"})),
            "frame_too_large",
        ),
        (
            "binary frame between 1x and 2x max_frame_bytes",
            Input::Binary(vec![0x05; MAX_FRAME + 1]),
            "frame_too_large",
        ),
        (
            "message over max_message_bytes",
            text(serde_json::json!({"type":"send_message","recipient":"bob",
                "message": format!("{MARKER}{}", "y".repeat(MAX_MESSAGE)),
                "crypto_mode":"classical","id": id.to_hex()})),
            "message_too_large",
        ),
        // Not a frame at all.
        (
            "bad JSON",
            Input::Text("{\"type\":".into()),
            "malformed_frame",
        ),
        (
            "not JSON",
            Input::Text("hello relay".into()),
            "malformed_frame",
        ),
        ("empty text", Input::Text(String::new()), "malformed_frame"),
        (
            "JSON array",
            Input::Text("[1,2,3]".into()),
            "malformed_frame",
        ),
        (
            "JSON string",
            Input::Text("\"auth\"".into()),
            "malformed_frame",
        ),
        ("JSON null", Input::Text("null".into()), "malformed_frame"),
        // The type.
        (
            "missing type",
            text(serde_json::json!({"username":"alice"})),
            "invalid_field",
        ),
        (
            "type not a string",
            text(serde_json::json!({"type":7})),
            "invalid_field",
        ),
        (
            "type null",
            text(serde_json::json!({"type":null})),
            "invalid_field",
        ),
        (
            "unknown type",
            text(serde_json::json!({"type":"launch"})),
            "unknown_type",
        ),
        (
            "unknown type with control characters",
            text(serde_json::json!({"type":"LAUNCH\u{7}!"})),
            "unknown_type",
        ),
        (
            "a relay frame type from a client",
            text(serde_json::json!({"type":"sent","id":id.to_hex(),"duplicate":false})),
            "unknown_type",
        ),
        // Fields.
        (
            "wrong field type (after as a string)",
            text(serde_json::json!({"type":"fetch","after":"0"})),
            "invalid_field",
        ),
        (
            "wrong field type (ids not a list)",
            text(serde_json::json!({"type":"ack","ids":"abc"})),
            "invalid_field",
        ),
        (
            "wrong field type (negative limit)",
            text(serde_json::json!({"type":"fetch","limit":-1})),
            "invalid_field",
        ),
        (
            "unknown crypto mode",
            text(serde_json::json!({"type":"key_exchange","crypto_mode":"rot13"})),
            "invalid_field",
        ),
        (
            "missing field",
            text(
                serde_json::json!({"type":"send_message","recipient":"bob","crypto_mode":"classical"}),
            ),
            "invalid_field",
        ),
        (
            "unknown extra field",
            text(serde_json::json!({"type":"key_exchange","crypto_mode":"classical","extra":1})),
            "invalid_field",
        ),
        (
            "bad base64",
            text(
                serde_json::json!({"type":"auth","username":"alice","crypto_mode":"classical",
                "signature":"!!not base64!!"}),
            ),
            "invalid_field",
        ),
        (
            "invalid username characters",
            text(
                serde_json::json!({"type":"send_message","recipient":"bob smith",
                "message":MARKER,"crypto_mode":"classical"}),
            ),
            "invalid_field",
        ),
        (
            "too-long username",
            text(
                serde_json::json!({"type":"send_message","recipient":"b".repeat(65),
                "message":MARKER,"crypto_mode":"classical"}),
            ),
            "invalid_field",
        ),
        (
            "bad message id hex",
            text(serde_json::json!({"type":"send_message","recipient":"bob",
                "message":MARKER,"crypto_mode":"classical","id":"XYZ"})),
            "invalid_field",
        ),
        (
            "uppercase message id",
            text(serde_json::json!({"type":"ack","ids":[id.to_hex().to_uppercase()]})),
            "invalid_field",
        ),
        (
            "empty ids list",
            text(serde_json::json!({"type":"ack","ids":[]})),
            "invalid_field",
        ),
        (
            "1025 ids",
            text(serde_json::json!({"type":"read","ids":hex_ids(1025)})),
            "invalid_field",
        ),
        (
            "fetch limit 0",
            text(serde_json::json!({"type":"fetch","limit":0})),
            "invalid_field",
        ),
        (
            "fetch limit 501",
            text(serde_json::json!({"type":"fetch","limit":501})),
            "invalid_field",
        ),
        // Key exchange.
        (
            "key_id without ciphertext",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical","key_id":key_id}),
            ),
            "invalid_field",
        ),
        (
            "ciphertext without key_id",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical",
                "ciphertext": Bytes(vec![1; 32])}),
            ),
            "invalid_field",
        ),
        (
            "key_id above 2^53 - 1",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical",
                "key_id": MAX_SAFE_INTEGER + 1, "ciphertext": Bytes(vec![1; 32])}),
            ),
            "invalid_field",
        ),
        (
            "ciphertext for a key_id never offered",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical",
                "key_id": other_key_id, "ciphertext": Bytes(vec![1; 32])}),
            ),
            "invalid_field",
        ),
        (
            "ciphertext for the offered key_id in another mode",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"hybrid",
                "key_id": key_id, "ciphertext": Bytes(vec![1; 1120])}),
            ),
            "invalid_field",
        ),
        (
            "truncated ciphertext for the offered key",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical",
                "key_id": key_id, "ciphertext": Bytes(vec![1; 31])}),
            ),
            "invalid_key",
        ),
        (
            "overlong ciphertext for the offered key",
            text(
                serde_json::json!({"type":"key_exchange","crypto_mode":"classical",
                "key_id": key_id, "ciphertext": Bytes(vec![1; 33])}),
            ),
            "invalid_key",
        ),
        // Authentication required.
        (
            "ack before auth",
            text(serde_json::json!({"type":"ack","ids":[id.to_hex()]})),
            "unauthorized",
        ),
        (
            "read before auth",
            text(serde_json::json!({"type":"read","ids":[id.to_hex()]})),
            "unauthorized",
        ),
        (
            "fetch before auth",
            text(serde_json::json!({"type":"fetch"})),
            "unauthorized",
        ),
        // Authentication failures (each earns a new challenge).
        auth_failed("auth signature of the wrong length", AuthCase::WrongLength),
        auth_failed("auth for an unknown user", AuthCase::UnknownUser),
        auth_failed("auth with another user's key", AuthCase::OtherUsersKey),
        auth_failed("auth replayed from another connection", AuthCase::Replay),
        auth_failed("auth over a spent challenge", AuthCase::StaleNonce),
        auth_failed("auth naming another relay", AuthCase::OtherRelay),
        auth_failed("auth with a mode the user lacks", AuthCase::ModeNotHeld),
        // Sends.
        (
            "unknown recipient",
            text(
                serde_json::json!({"type":"send_message","recipient":"nobody_here",
                "message":MARKER,"crypto_mode":"classical"}),
            ),
            "unknown_recipient",
        ),
        // Binary frames.
        (
            "binary: unknown type byte",
            Input::Binary(vec![0x7f, 0, 0]),
            "unknown_type",
        ),
        (
            "binary: relay frame type",
            Input::Binary(vec![0x84; 18]),
            "unknown_type",
        ),
        (
            "binary: empty",
            Input::Binary(Vec::new()),
            "malformed_frame",
        ),
        (
            "binary: truncated send_message",
            Input::Binary(vec![0x02, 0x05, b'b', b'o']),
            "malformed_frame",
        ),
        (
            "binary: invalid UTF-8 in a name",
            Input::Binary(vec![0x02, 0x02, 0xff, 0xfe, 0, 0, 0, 0, 0x01, 0x00]),
            "malformed_frame",
        ),
        (
            "binary: trailing bytes",
            Input::Binary(vec![0x05, 0x00, 0x00, 0xaa]),
            "malformed_frame",
        ),
        (
            "binary: unknown crypto mode",
            Input::Binary(vec![0x06, 0x09, 0x00, 0x00]),
            "invalid_field",
        ),
        (
            "binary: zero ids",
            Input::Binary(vec![0x03, 0x00, 0x00]),
            "invalid_field",
        ),
        (
            "binary: message length beyond any limit",
            Input::Binary(vec![0x02, 0x03, b'b', b'o', b'b', 0xff, 0xff, 0xff, 0xff]),
            "message_too_large",
        ),
        (
            "binary: ack before auth",
            Input::Binary([&[0x03, 0x00, 0x01][..], &id.0].concat()),
            "unauthorized",
        ),
    ];
    // Every code the relay gives a hostile frame is exercised.
    for want in [
        "malformed_frame",
        "unknown_type",
        "invalid_field",
        "frame_too_large",
        "message_too_large",
        "unauthorized",
        "invalid_key",
    ] {
        assert!(
            cases.iter().any(|(_, _, c)| *c == want),
            "no case for {want}"
        );
    }

    for (what, input, code) in cases {
        let is_auth = matches!(input, Input::Auth(_));
        let m = match input {
            Input::Text(t) => Message::text(t),
            Input::Binary(b) => Message::binary(b),
            Input::Auth(case) => auth_input(&actors, &case, &ch, &spent),
        };
        let binary = matches!(m, Message::Binary(_));
        h.send_raw(m).await;
        match h.recv().await {
            RelayFrame::Error {
                code: c, message, ..
            } => {
                assert_eq!(c.as_str(), code, "{what}: {message}");
                assert!(
                    !message.contains(MARKER),
                    "{what}: the error echoes content"
                );
            }
            f => panic!("{what}: expected error {code}, got {f:?}"),
        }
        assert_eq!(
            h.last_binary, binary,
            "{what}: answered in the other encoding"
        );
        if is_auth {
            let next = h.challenge().await;
            assert_ne!(
                next.nonce, ch.nonce,
                "{what}: the challenge was not renewed"
            );
            spent = std::mem::replace(&mut ch, next);
        }
    }

    // The same connection still works: the offered key completes, alice authenticates, and a
    // second auth on an authenticated connection is refused.
    let pk = KemPublicKey::from_bytes(CryptoMode::Classical, public_key.as_slice()).unwrap();
    let (ct, _) = pk.encapsulate(&mut OsRng).unwrap();
    h.send(&ClientFrame::KeyExchange {
        crypto_mode: CryptoMode::Classical,
        key_id: Some(key_id),
        ciphertext: Some(Bytes(ct.as_bytes().to_vec())),
    })
    .await;
    assert!(matches!(h.recv().await, RelayFrame::KeyExchangeOk { key_id: k, .. } if k == key_id));
    let login = actors
        .alice
        .login_with(&mut h, CryptoMode::Classical, &ch)
        .await;
    assert_eq!(login.pending, 0, "no hostile frame stored a message");
    h.send(&actors.alice.auth(CryptoMode::Classical, &ch)).await;
    h.expect_error("invalid_field").await;

    // And the relay serves other clients: a full send and receive both ways.
    let (mut b, login) = actors.bob.connect(&relay).await;
    assert_eq!(
        login.pending, 0,
        "no hostile frame stored a message for bob"
    );
    let to_bob = random_id();
    assert_eq!(
        h.send_message("bob", "still here", CryptoMode::Hybrid, Some(to_bob))
            .await,
        (to_bob, false)
    );
    let m = b.expect_message().await;
    assert_eq!((m.id, m.sender.as_deref()), (to_bob, Some("alice")));
    let to_alice = random_id();
    assert_eq!(
        b.send_message("alice", "and back", CryptoMode::Quantum, Some(to_alice))
            .await,
        (to_alice, false)
    );
    assert_eq!(h.expect_message().await.id, to_alice);
}

#[tokio::test]
async fn a_frame_over_twice_the_limit_closes_with_1009() {
    let relay = Relay::start(&hostile_config()).await;
    for m in [
        Message::text("x".repeat(2 * MAX_FRAME + 1_000)),
        Message::binary(vec![0x02; 2 * MAX_FRAME + 1_000]),
    ] {
        let mut ws = relay.connect().await;
        let (_, read, close) = ws.send_while_reading(m).await;
        assert_eq!(
            read, 0,
            "the oversized frame was answered instead of refused"
        );
        let close = close.expect("a close frame");
        assert_eq!(u16::from(close.code), 1009, "{close:?}");
    }
    // Another client is unaffected.
    let mut ws = relay.connect().await;
    ws.send(&ClientFrame::Fetch {
        after: None,
        limit: None,
    })
    .await;
    ws.expect_error("unauthorized").await;
}

/// Opens a connection and says `hello`; `Ok(challenge)` if admitted, `Err(close)` if refused.
async fn try_admit(relay: &Relay) -> Result<(Ws, Challenge), Option<(u16, String)>> {
    let mut ws = relay.connect().await;
    let client_nonce = ws.hello(CryptoMode::Hybrid).await;
    match ws.next_raw().await {
        Some(Message::Text(t)) => {
            let f = RelayFrame::from_json(&t).unwrap();
            match ws.challenge_of(f, client_nonce) {
                Ok(ch) => Ok((ws, ch)),
                Err(other) => panic!("expected a challenge, got {other:?}"),
            }
        }
        Some(Message::Close(c)) => {
            Err(c.map(|c| (u16::from(c.code), c.reason.as_str().to_owned())))
        }
        other => panic!("expected a challenge or a close, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_with_1013() {
    let (relay, alice, bob) =
        start_with_alice_and_bob(&Config::new().set("server", "max_connections", 3)).await;

    let (mut c1, ch1) = try_admit(&relay).await.expect("first connection admitted");
    let (mut c2, ch2) = try_admit(&relay).await.expect("second connection admitted");
    let (c3, _) = try_admit(&relay).await.expect("third connection admitted");
    for _ in 0..2 {
        match try_admit(&relay).await {
            Err(Some((code, reason))) => {
                assert_eq!(code, 1013);
                assert_eq!(reason, "relay at max_connections");
            }
            Err(None) => panic!("refused without a close frame"),
            Ok(_) => panic!("a fourth connection was admitted with max_connections = 3"),
        }
    }

    // The admitted connections keep working.
    alice.login_with(&mut c1, CryptoMode::Classical, &ch1).await;
    bob.login_with(&mut c2, CryptoMode::Classical, &ch2).await;
    let id = random_id();
    assert_eq!(
        c1.send_message("bob", "still served", CryptoMode::Hybrid, Some(id))
            .await,
        (id, false)
    );
    assert_eq!(c2.expect_message().await.id, id);
    let metrics = relay.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "nano_messenger_connections_refused_total{reason=\"max_connections\"}"
        ),
        Some(2.0),
        "{metrics}"
    );

    // A freed slot admits a new connection.
    c3.close().await;
    let deadline = tokio::time::Instant::now() + relay_common::WAIT;
    loop {
        match try_admit(&relay).await {
            Ok(_) => break,
            Err(close) => assert!(
                tokio::time::Instant::now() < deadline,
                "still refused after a connection closed: {close:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_over_its_rate_is_told_rate_limited() {
    // A burst of 5 and a refill of one frame per second: the 20 frames below go out well
    // within a second, so at most one token can come back meanwhile, on any machine.
    let relay = Relay::start(
        &Config::new()
            .set("security", "rate_limit_per_connection", 1)
            .set("security", "rate_limit_burst", 5),
    )
    .await;
    let fetch = ClientFrame::Fetch {
        after: None,
        limit: None,
    };
    let mut ws = relay.connect().await;
    for _ in 0..20 {
        ws.feed(&fetch).await;
    }
    ws.flush().await;
    let mut codes = Vec::new();
    for _ in 0..20 {
        match ws.recv().await {
            RelayFrame::Error { code, .. } => codes.push(code.as_str()),
            f => panic!("expected an error, got {f:?}"),
        }
    }
    assert!(
        codes[..5].iter().all(|c| *c == "unauthorized"),
        "the burst was not honoured: {codes:?}"
    );
    assert!(codes.contains(&"rate_limited"), "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| matches!(*c, "unauthorized" | "rate_limited")),
        "{codes:?}"
    );

    // Other connections have their own allowance.
    let mut other = relay.connect().await;
    other.send(&fetch).await;
    other.expect_error("unauthorized").await;
    // The limited connection stays open and is served again once its bucket refills.
    let deadline = tokio::time::Instant::now() + relay_common::WAIT;
    loop {
        ws.send(&fetch).await;
        match ws.recv().await {
            RelayFrame::Error { code, .. } if code.as_str() == "unauthorized" => break,
            RelayFrame::Error { code, .. } if code.as_str() == "rate_limited" => {
                assert!(tokio::time::Instant::now() < deadline, "never served again");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            f => panic!("unexpected {f:?}"),
        }
    }
}

#[tokio::test]
async fn the_per_address_rate_spans_connections() {
    let relay = Relay::start(
        &Config::new()
            .set("security", "rate_limit_per_address", 1)
            .set("security", "rate_limit_burst", 10),
    )
    .await;
    let fetch = ClientFrame::Fetch {
        after: None,
        limit: None,
    };
    let mut codes = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut ws = relay.connect().await;
        for _ in 0..10 {
            ws.feed(&fetch).await;
        }
        ws.flush().await;
        for _ in 0..10 {
            match ws.recv().await {
                RelayFrame::Error { code, .. } => codes.push(code.as_str()),
                f => panic!("expected an error, got {f:?}"),
            }
        }
        conns.push(ws);
    }
    // 30 frames from one address against an allowance of 10 (plus one a second refilled).
    assert!(codes.contains(&"rate_limited"), "{codes:?}");
    assert_eq!(codes[0], "unauthorized");
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_and_keeps_its_inbox() {
    const N: usize = 30;
    let relay = Relay::start(&Config::new().set("limits", "send_queue_depth", 8)).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let slow = User::new("slow", CryptoMode::Classical);
    let fast = User::new("fast", CryptoMode::Classical);
    for u in [&alice, &slow, &fast] {
        u.register(&relay).await;
    }

    // slow authenticates, then never reads; its receive window stays small.
    let mut slow_ws = Ws::connect_with_recv_buffer(&relay.ws, 4096).await;
    slow.login(&mut slow_ws, CryptoMode::Classical).await;
    // fast reads everything as it comes.
    let (mut fast_ws, _) = fast.connect(&relay).await;
    let fast_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..N {
            got.push(fast_ws.expect_message().await.id);
        }
        got
    });

    let (mut a, _) = alice.connect(&relay).await;
    let payload = "z".repeat(nano_proto::MAX_MESSAGE_BYTES);
    let mut to_slow: Vec<MessageId> = Vec::new();
    let mut to_fast: Vec<MessageId> = Vec::new();
    for _ in 0..N {
        let (s, f) = (random_id(), random_id());
        a.feed(&send_frame(
            "slow",
            &payload,
            CryptoMode::Classical,
            Some(s),
        ))
        .await;
        a.feed(&send_frame("fast", "small", CryptoMode::Classical, Some(f)))
            .await;
        to_slow.push(s);
        to_fast.push(f);
    }
    a.flush().await;
    for i in 0..N {
        assert_eq!(a.expect_sent().await, (to_slow[i], false));
        assert_eq!(a.expect_sent().await, (to_fast[i], false));
    }

    // fast got everything, in order.
    let got = tokio::time::timeout(relay_common::WAIT, fast_reader)
        .await
        .expect("fast reader timed out")
        .unwrap();
    assert_eq!(got, to_fast);

    // slow's connection ends with the slow-reader close, well before all N were delivered.
    let (delivered, close) = slow_ws.closed().await;
    assert!(
        delivered < N,
        "the slow reader received all {delivered} messages"
    );
    let close = close.expect("a close frame naming the reason");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert_eq!(close.reason.as_str(), "slow reader: send queue full");
    let metrics = relay.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "nano_messenger_connections_refused_total{reason=\"slow_reader\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // Nothing was lost: reconnecting streams every message, in order.
    let (_s, login) = slow.connect(&relay).await;
    assert_eq!(login.pending, N as u64);
    assert_eq!(login.msgs.iter().map(|m| m.id).collect::<Vec<_>>(), to_slow);
    assert!(login.msgs.iter().all(|m| m.message == payload));
}

#[tokio::test]
async fn concurrent_auths_are_judged_one_by_one() {
    let relay = Relay::start(&Config::new()).await;
    let users: Vec<User> = (0..12)
        .map(|i| User::new(&format!("user{i}"), CryptoMode::Classical))
        .collect();
    for u in &users {
        u.register(&relay).await;
    }
    // For each user, one connection answering with its own key and one answering in its name
    // with a neighbour's key of the same mode (a signature of the right length that does not
    // verify): the relay checks them in batches, and each must get its own verdict.
    let mut conns = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mode = CryptoMode::ALL[i % 3];
        for good in [true, false] {
            let mut ws = relay.connect().await;
            let ch = ws.challenge().await;
            let frame = if good {
                u.auth(mode, &ch)
            } else {
                users[(i + 1) % users.len()].auth_as(&u.name, mode, &ch)
            };
            conns.push((ws, good, u, frame));
        }
    }
    for (ws, _, _, frame) in &mut conns {
        ws.send(frame).await;
    }
    for (ws, good, u, _) in &mut conns {
        match ws.recv().await {
            RelayFrame::AuthOk { username, .. } if *good => assert_eq!(username, u.name),
            RelayFrame::Error { code, .. } if !*good => assert_eq!(code.as_str(), "auth_failed"),
            f => panic!("{} (genuine: {good}): got {f:?}", u.name),
        }
    }
}

#[tokio::test]
async fn connections_that_never_handshake_are_dropped_and_free_their_slot() {
    use tokio::io::AsyncReadExt;
    let relay = Relay::start(&Config::new().set("server", "max_connections", 2).set(
        "server",
        "connection_timeout_seconds",
        1,
    ))
    .await;
    let addr = relay.ws.trim_start_matches("ws://").to_owned();
    // Two raw TCP connections that never speak take both slots...
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::time::timeout(relay_common::WAIT, tokio::net::TcpStream::connect(&addr))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // ...until the relay gives up on their handshake and closes them.
    for s in &mut idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(relay_common::WAIT, s.read(&mut buf))
            .await
            .expect("the relay kept a silent connection open")
            .unwrap_or(0);
        assert_eq!(n, 0, "the relay wrote to a connection that never handshook");
    }
    // The slots are free again.
    let deadline = tokio::time::Instant::now() + relay_common::WAIT;
    loop {
        match try_admit(&relay).await {
            Ok(_) => break,
            Err(close) => assert!(
                tokio::time::Instant::now() < deadline,
                "still refused after the silent connections were dropped: {close:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
