#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The SDK against the real relay binary: round trips in every mode, acks, offline delivery,
//! relay crashes (kill -9) with and without a port change, tampered ciphertext, a contact's key
//! change and a relay identity change.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use common::{Relay, WAIT, rotate_keys};
use nano_client::store::MemoryStore;
use nano_client::{
    Client, ClientConfig, ClientError, Incoming, ModeChoice, Received, SendReceipt, TrustAll,
    TrustPolicy,
};
use nano_crypto::{CryptoMode, Fingerprint, Identity, OsRng};
use nano_proto::MessageId;
use nano_proto::rest::RelayInfo;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

type Connected = (Client, Receiver<Incoming>, RelayInfo);

fn identity(min: CryptoMode) -> Arc<Identity> {
    Arc::new(Identity::generate(min, &mut OsRng).expect("identity"))
}

async fn register(url: &str, name: &str, id: &Identity) -> RelayInfo {
    timeout(
        WAIT,
        Client::register_only(&ClientConfig::new(url, name), id),
    )
    .await
    .expect("registration timed out")
    .unwrap_or_else(|e| panic!("registering {name}: {e}"))
}

async fn connect_with(
    url: &str,
    name: &str,
    id: &Arc<Identity>,
    pinned_relay_id: Option<String>,
    trust: Arc<dyn TrustPolicy>,
) -> Result<Connected, ClientError> {
    let cfg = ClientConfig {
        pinned_relay_id,
        ..ClientConfig::new(url, name)
    };
    timeout(
        WAIT,
        Client::connect_with_store(cfg, Arc::clone(id), trust, store_of(id)),
    )
    .await
    .expect("connect timed out")
}

/// The session store of `id`'s device: the same one at every connect, as a real device keeps
/// its sessions across reconnects.
fn store_of(id: &Identity) -> Arc<dyn nano_client::store::Store> {
    static STORES: std::sync::OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> =
        std::sync::OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let store = stores.entry(id.fingerprint().to_hex()).or_default();
    Arc::clone(store) as Arc<dyn nano_client::store::Store>
}

async fn connect(relay: &Relay, name: &str, id: &Arc<Identity>) -> (Client, Receiver<Incoming>) {
    let (c, rx, _) = connect_with(&relay.api, name, id, None, Arc::new(TrustAll))
        .await
        .unwrap_or_else(|e| panic!("connecting {name}: {e}"));
    (c, rx)
}

/// A relay with alice (classical) and bob (`bob_mode`) registered on it.
async fn start_with_alice_and_bob(bob_mode: CryptoMode) -> (Relay, Arc<Identity>, Arc<Identity>) {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(bob_mode);
    register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    (relay, alice, bob)
}

async fn send(c: &Client, to: &str, text: &str, choice: ModeChoice) -> SendReceipt {
    timeout(WAIT, c.send(to, text.as_bytes(), choice))
        .await
        .expect("send timed out")
        .unwrap_or_else(|e| panic!("sending {text:?} to {to}: {e}"))
}

/// A send that must fail (`why` says why), and its error.
async fn send_refused(
    c: &Client,
    to: &str,
    text: &[u8],
    choice: ModeChoice,
    why: &str,
) -> ClientError {
    timeout(WAIT, c.send(to, text, choice))
        .await
        .expect("send timed out")
        .expect_err(why)
}

async fn next(rx: &mut Receiver<Incoming>) -> Incoming {
    timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing received within {WAIT:?}"))
        .expect("the message stream ended")
}

async fn expect_message(rx: &mut Receiver<Incoming>) -> Received {
    match next(rx).await {
        Incoming::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn expect_up_to_date(rx: &mut Receiver<Incoming>) {
    match next(rx).await {
        Incoming::UpToDate => {}
        other => panic!("expected UpToDate, got {other:?}"),
    }
}

/// Messages up to and including the one whose text is `last` (UpToDate skipped).
async fn messages_until(rx: &mut Receiver<Incoming>, last: &str) -> Vec<Received> {
    let mut out = Vec::new();
    loop {
        match next(rx).await {
            Incoming::UpToDate | Incoming::Redelivered { .. } => {}
            Incoming::Message(m) => {
                let done = m.plaintext == last.as_bytes();
                out.push(m);
                if done {
                    return out;
                }
            }
            other => panic!("expected messages up to {last:?}, got {other:?}"),
        }
    }
}

fn text(m: &Received) -> String {
    String::from_utf8(m.plaintext.clone()).expect("UTF-8 plaintext")
}

/// Polls `f` once (so a send seals and queues its frame), leaving it pending.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx))).await
}

/// Trust on first use: the first fingerprint seen for a name is pinned, a different one is
/// refused.
#[derive(Debug, Default)]
struct Tofu(Mutex<HashMap<String, Fingerprint>>);

impl TrustPolicy for Tofu {
    fn check(&self, name: &str, fp: &Fingerprint) -> nano_client::Result<()> {
        let mut pins = self.0.lock().unwrap();
        match pins.get(name) {
            None => {
                pins.insert(name.to_owned(), *fp);
                Ok(())
            }
            Some(p) if p == fp => Ok(()),
            Some(p) => Err(ClientError::ContactKeyChanged {
                name: name.to_owned(),
                pinned: p.to_hex(),
                now: fp.to_hex(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips

/// Alice (minimum classical) and Bob (minimum `mode`): explicit and automatic sends arrive
/// intact with the chosen mode; acknowledged messages are not delivered again after a
/// reconnect.
async fn round_trip(mode: CryptoMode) {
    let (relay, alice, bob) = start_with_alice_and_bob(mode).await;
    let (a, mut a_rx) = connect(&relay, "alice", &alice).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut a_rx).await;
    expect_up_to_date(&mut b_rx).await;

    if mode > CryptoMode::Classical {
        let e = send_refused(
            &a,
            "bob",
            b"too weak",
            ModeChoice::Explicit(CryptoMode::Classical),
            "a mode below bob's minimum must be refused",
        )
        .await;
        assert!(matches!(e, ClientError::Invalid(_)), "{e:?}");
    }

    let explicit_text = format!("explicit {mode} message");
    let explicit = send(&a, "bob", &explicit_text, ModeChoice::Explicit(mode)).await;
    assert_eq!(explicit.mode, mode);
    assert!(!explicit.duplicate);
    let m1 = expect_message(&mut b_rx).await;
    assert_eq!(m1.id, explicit.id);
    assert_eq!(m1.sender, "alice");
    assert_eq!(m1.sender_fingerprint, alice.fingerprint());
    assert_eq!(m1.crypto_mode, mode);
    assert_eq!(text(&m1), explicit_text);
    assert!(m1.timestamp_ms > 0 && m1.sent_at_ms > 0);

    let auto = send(&a, "bob", "automatic mode", ModeChoice::Auto).await;
    // Never below bob's minimum, and never below hybrid whatever this machine's load or the
    // measured round trip: the weakest mode that satisfies both.
    assert_eq!(
        auto.mode,
        mode.max(CryptoMode::Hybrid),
        "auto picked {} for bob's minimum {mode}",
        auto.mode
    );
    let m2 = expect_message(&mut b_rx).await;
    assert_eq!(m2.id, auto.id);
    assert_eq!(m2.sender, "alice");
    assert_eq!(m2.crypto_mode, auto.mode);
    assert_eq!(text(&m2), "automatic mode");

    // `read` records the read time of the first message only. The relay handles one
    // connection's frames in order: once a later send is stored, the marks before it have been
    // applied.
    b.read(&[m1.id]).await.unwrap();
    send(&b, "alice", "read barrier", ModeChoice::Auto).await;
    let read_at = |id: MessageId| -> Option<i64> {
        let db = rusqlite::Connection::open(relay.db_path()).unwrap();
        db.busy_timeout(WAIT).unwrap();
        db.query_row(
            "SELECT read_at FROM messages WHERE message_id = ?1",
            [id.0.to_vec()],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(read_at(m1.id).is_some(), "read did not mark the message");
    assert!(read_at(m2.id).is_none(), "read marked another message");
    assert_eq!(text(&expect_message(&mut a_rx).await), "read barrier");

    b.ack(&[m1.id, m2.id]).await.unwrap();
    timeout(WAIT, b.flush()).await.unwrap().unwrap();
    // The relay handles one connection's frames in order: once this send is stored, the ack
    // before it has been applied. It also checks the way back.
    send(&b, "alice", "ack barrier", ModeChoice::Auto).await;
    let back = expect_message(&mut a_rx).await;
    assert_eq!(
        (back.sender.as_str(), text(&back).as_str()),
        ("bob", "ack barrier")
    );
    b.close().await;

    // A new connection: the backlog is empty (nothing acknowledged comes back).
    let (_b2, mut b2_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b2_rx).await;
    // And live delivery still works on it (nothing else was queued before this).
    send(&a, "bob", "after reconnect", ModeChoice::Explicit(mode)).await;
    let m3 = expect_message(&mut b2_rx).await;
    assert_eq!(text(&m3), "after reconnect");
}

per_mode!(round_trip:
    round_trip_classical => Classical,
    round_trip_hybrid => Hybrid,
    round_trip_quantum => Quantum,
);

#[tokio::test]
async fn sending_to_an_unknown_user_fails() {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    register(&relay.api, "alice", &alice).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    // The same error whether the mode is chosen after the lookup or given up front (where the
    // relay's `not_found` to `get_contact` sends the client to the HTTP lookup).
    for choice in [
        ModeChoice::Auto,
        ModeChoice::Explicit(CryptoMode::Classical),
    ] {
        let e = send_refused(&a, "nobody", b"hello", choice, "nobody is not registered").await;
        assert!(
            matches!(&e, ClientError::UnknownUser(n) if n == "nobody"),
            "{e:?}"
        );
    }
}

/// A message over the largest plaintext is refused before sealing, naming the largest that
/// fits; the largest itself goes through and arrives whole.
#[tokio::test]
async fn an_oversized_message_is_refused_before_sealing() {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Quantum);
    let bob = identity(CryptoMode::Quantum);
    register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    let (_b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b_rx).await;
    let largest = nano_crypto::envelope::MAX_PLAINTEXT_LEN;
    let e = timeout(
        WAIT,
        a.send("bob", &vec![b'x'; largest + 1], ModeChoice::Auto),
    )
    .await
    .expect("send timed out")
    .expect_err("one byte too many");
    assert!(
        matches!(
            e,
            ClientError::MessageTooLarge { size, largest: l, mode: CryptoMode::Quantum }
                if size == largest + 1 && l == largest
        ),
        "{e:?}"
    );
    let receipt = timeout(WAIT, a.send("bob", &vec![b'y'; largest], ModeChoice::Auto))
        .await
        .expect("send timed out")
        .expect("the largest message fits");
    let m = expect_message(&mut b_rx).await;
    assert_eq!(m.id, receipt.id);
    assert_eq!(m.plaintext.len(), largest);
}

/// A client whose user the relay does not know is refused at `auth`: retrying cannot help, so
/// its sends fail and its message stream ends instead of waiting forever.
#[tokio::test]
async fn an_unregistered_client_fails_instead_of_retrying() {
    let relay = Relay::start();
    let bob = identity(CryptoMode::Classical);
    register(&relay.api, "bob", &bob).await;
    let ghost = identity(CryptoMode::Classical);
    let (g, mut g_rx) = connect(&relay, "ghost", &ghost).await;
    let r = timeout(WAIT, g.send("bob", b"boo", ModeChoice::Auto))
        .await
        .expect("the send neither completed nor failed");
    match r {
        Err(ClientError::Relay { .. } | ClientError::Closed) => {}
        other => panic!("expected the relay's refusal, got {other:?}"),
    }
    let end = timeout(WAIT, g_rx.recv())
        .await
        .expect("the message stream neither ended nor yielded");
    assert!(end.is_none(), "unexpected {end:?}");
}

// ---------------------------------------------------------------------------------------------
// Offline delivery and crashes

#[tokio::test]
async fn offline_backlog_is_delivered_once_in_order() {
    const N: usize = 50;
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Hybrid).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    let mut receipts = Vec::new();
    for i in 0..N {
        receipts.push(send(&a, "bob", &format!("offline {i:03}"), ModeChoice::Auto).await);
    }

    let (_b, mut b_rx) = connect(&relay, "bob", &bob).await;
    for (i, r) in receipts.iter().enumerate() {
        let m = expect_message(&mut b_rx).await;
        assert_eq!(text(&m), format!("offline {i:03}"), "out of order");
        assert_eq!(m.id, r.id);
        assert_eq!(m.crypto_mode, r.mode);
    }
    expect_up_to_date(&mut b_rx).await;
    // Nothing else is queued: the next thing Bob gets is the next message.
    send(&a, "bob", "sentinel", ModeChoice::Auto).await;
    assert_eq!(text(&expect_message(&mut b_rx).await), "sentinel");
}

/// Sends issued at once queue behind each other in the connection task, which writes them in
/// runs of up to 64 frames per flush: each is answered, stored and delivered exactly once.
#[tokio::test]
async fn sends_issued_at_once_are_each_delivered_once() {
    const N: usize = 150;
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Classical).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    let (_b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b_rx).await;
    // The first message starts the session; the rest ride it, all in flight together.
    send(&a, "bob", "first", ModeChoice::Auto).await;
    assert_eq!(text(&expect_message(&mut b_rx).await), "first");
    let texts: Vec<String> = (0..N).map(|i| format!("burst {i:03}")).collect();
    let receipts =
        futures_util::future::join_all(texts.iter().map(|t| send(&a, "bob", t, ModeChoice::Auto)))
            .await;
    let mut got = std::collections::HashMap::new();
    while got.len() < N {
        let m = expect_message(&mut b_rx).await;
        assert!(
            got.insert(text(&m), m.id).is_none(),
            "delivered twice: {}",
            text(&m)
        );
    }
    for (t, r) in texts.iter().zip(&receipts) {
        assert_eq!(got.get(t), Some(&r.id), "{t}");
    }
    send(&a, "bob", "sentinel", ModeChoice::Auto).await;
    assert_eq!(text(&expect_message(&mut b_rx).await), "sentinel");
}

#[tokio::test]
async fn a_backlog_of_several_pages_is_delivered_once_in_order() {
    const N: usize = 230;
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Classical).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    let mut receipts = Vec::new();
    for i in 0..N {
        let choice = ModeChoice::Explicit(CryptoMode::Classical);
        receipts.push(send(&a, "bob", &format!("paged {i:03}"), choice).await);
    }
    let (_b, mut b_rx) = connect(&relay, "bob", &bob).await;
    for (i, r) in receipts.iter().enumerate() {
        let m = expect_message(&mut b_rx).await;
        assert_eq!(text(&m), format!("paged {i:03}"), "out of order");
        assert_eq!(m.id, r.id);
    }
    expect_up_to_date(&mut b_rx).await;
    send(&a, "bob", "sentinel", ModeChoice::Auto).await;
    assert_eq!(text(&expect_message(&mut b_rx).await), "sentinel");
}

#[tokio::test]
async fn stored_messages_survive_kill_9_and_a_port_change() {
    const N: usize = 20;
    let mut relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(CryptoMode::Classical);
    let info = register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    let pin = Some(info.relay_id.clone());
    let (a, _a_rx, _) = connect_with(&relay.api, "alice", &alice, pin.clone(), Arc::new(TrustAll))
        .await
        .unwrap();
    let mut receipts = Vec::new();
    for i in 0..N {
        let choice = ModeChoice::Explicit(CryptoMode::Classical);
        receipts.push(send(&a, "bob", &format!("durable {i:03}"), choice).await);
    }
    a.close().await;

    relay.kill9();
    relay.restart();

    // The relay's identity lives in its data dir: the pin still holds on the new address.
    let (_b, mut b_rx, info2) =
        connect_with(&relay.api, "bob", &bob, pin.clone(), Arc::new(TrustAll))
            .await
            .expect("the restarted relay must keep its identity");
    assert_eq!(info2.relay_id, info.relay_id);
    for (i, r) in receipts.iter().enumerate() {
        let m = expect_message(&mut b_rx).await;
        assert_eq!(text(&m), format!("durable {i:03}"));
        assert_eq!(m.id, r.id);
    }
    expect_up_to_date(&mut b_rx).await;

    let (a2, _a2_rx, _) = connect_with(&relay.api, "alice", &alice, pin, Arc::new(TrustAll))
        .await
        .unwrap();
    send(&a2, "bob", "sentinel", ModeChoice::Auto).await;
    assert_eq!(text(&expect_message(&mut b_rx).await), "sentinel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_by_themselves_and_resend_what_was_sent_while_down() {
    const N: usize = 5;
    let (mut relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Classical).await;
    let (a, mut a_rx) = connect(&relay, "alice", &alice).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut a_rx).await;
    expect_up_to_date(&mut b_rx).await;
    // Also fills Alice's cache of Bob's bundle, so sends need no HTTP while the relay is down.
    let before = send(&a, "bob", "before the crash", ModeChoice::Auto).await;
    let m = expect_message(&mut b_rx).await;
    assert_eq!(m.id, before.id);

    relay.kill9();
    // An ack issued while the relay is down is delivered after it returns.
    b.ack(&[m.id]).await.unwrap();
    // Issued while the relay is down: each send seals and queues its frame, then waits.
    let mut pending: Vec<_> = (0..N)
        .map(|i| {
            let a = a.clone();
            Box::pin(async move {
                let choice = ModeChoice::Explicit(CryptoMode::Classical);
                a.send("bob", format!("while down {i}").as_bytes(), choice)
                    .await
            })
        })
        .collect();
    for p in &mut pending {
        assert!(
            poll_once(p).await.is_pending(),
            "a send completed while the relay was down"
        );
    }

    relay.restart_same_ports();

    let receipts = timeout(WAIT, futures_util::future::join_all(pending))
        .await
        .expect("sends queued while the relay was down did not complete after it returned");
    let receipts: Vec<SendReceipt> = receipts
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("send failed: {e}")))
        .collect();
    let sentinel = send(&a, "bob", "sentinel", ModeChoice::Auto).await;

    // Bob's client reconnected by itself: every message sent while down arrives once, with the
    // id its sender got, and the message shown before the crash is not shown again.
    let got = messages_until(&mut b_rx, "sentinel").await;
    let mut ids: Vec<MessageId> = got.iter().map(|m| m.id).collect();
    let mut expected: Vec<MessageId> = receipts.iter().map(|r| r.id).collect();
    expected.push(sentinel.id);
    ids.sort_by_key(|i| i.0);
    expected.sort_by_key(|i| i.0);
    let texts: Vec<String> = got.iter().map(text).collect();
    assert_eq!(ids, expected, "received {texts:?}");
    for m in &got {
        let i = receipts.iter().position(|r| r.id == m.id);
        if let Some(i) = i {
            assert_eq!(text(m), format!("while down {i}"));
        }
    }

    // Bob acknowledges everything; once a later send from the same connection is stored, the
    // acks before it have been applied, and a new connection finds the inbox empty.
    b.ack(&ids).await.unwrap();
    send(&b, "alice", "ack barrier", ModeChoice::Auto).await;
    b.close().await;
    let (_b2, mut b2_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b2_rx).await;
    drop(a_rx);
}

// ---------------------------------------------------------------------------------------------
// Tampering and key changes

/// Flips one byte of the stored envelope of `id` at `index(len)`.
fn tamper(db: &rusqlite::Connection, id: MessageId, index: impl Fn(usize) -> usize) {
    let mut bytes: Vec<u8> = db
        .query_row(
            "SELECT payload FROM messages WHERE message_id = ?1",
            [id.0.to_vec()],
            |r| r.get(0),
        )
        .expect("the stored message");
    let i = index(bytes.len());
    bytes[i] ^= 0x55;
    let n = db
        .execute(
            "UPDATE messages SET payload = ?1 WHERE message_id = ?2",
            rusqlite::params![bytes, id.0.to_vec()],
        )
        .expect("update payload");
    assert_eq!(n, 1);
}

async fn tampered_messages_are_rejected(mode: CryptoMode) {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(mode);
    let carol = identity(CryptoMode::Classical);
    register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    register(&relay.api, "carol", &carol).await;
    let (a, _a_rx) = connect(&relay, "alice", &alice).await;
    let long = |i: usize| format!("message {i} {}", "x".repeat(300));
    let mut receipts = Vec::new();
    for i in 0..6 {
        receipts.push(send(&a, "bob", &long(i), ModeChoice::Explicit(mode)).await);
    }

    // Bob is offline: edit the stored envelopes in the relay's database.
    let db = rusqlite::Connection::open(relay.db_path()).expect("open relay.db");
    db.busy_timeout(WAIT).unwrap();
    let sig_len = nano_crypto::sign::signature_len(mode);
    // Message 0: a byte in the middle of the encrypted body (150 bytes before the end of the
    // ~330-byte body, which the signature follows).
    tamper(&db, receipts[0].id, |len| len - sig_len - 150);
    // Message 2: a byte of the signature.
    tamper(&db, receipts[2].id, |len| len - sig_len + 5);
    // Message 4: the relay serves it under another id.
    let n = db
        .execute(
            "UPDATE messages SET message_id = ?1 WHERE message_id = ?2",
            [vec![0x42u8; 16], receipts[4].id.0.to_vec()],
        )
        .unwrap();
    assert_eq!(n, 1);
    // Message 5: the relay claims carol sent it.
    let n = db
        .execute(
            "UPDATE messages SET sender_id = (SELECT id FROM users WHERE username = 'carol') \
             WHERE message_id = ?1",
            [receipts[5].id.0.to_vec()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);

    let (_b, mut b_rx) = connect(&relay, "bob", &bob).await;
    // (index, id, claimed sender, what the error must mention)
    let rejected = [
        (0, receipts[0].id, "alice", "signature"),
        (2, receipts[2].id, "alice", "signature"),
        (4, MessageId([0x42; 16]), "alice", "id"),
        (5, receipts[5].id, "carol", "sender"),
    ];
    for (i, r) in receipts.iter().enumerate() {
        let item = next(&mut b_rx).await;
        if let Some((_, want_id, want_sender, words)) = rejected.iter().find(|x| x.0 == i) {
            let Incoming::Rejected { id, sender, error } = item else {
                panic!("message {i}: expected a rejection, got {item:?}");
            };
            assert_eq!(id, *want_id, "message {i}");
            assert_eq!(sender.as_deref(), Some(*want_sender), "message {i}");
            let msg = error.to_string();
            assert!(
                matches!(error, ClientError::Rejected { .. }),
                "message {i}: {error:?}"
            );
            assert!(
                msg.contains(words),
                "message {i}: the error does not say what failed ({words}): {msg}"
            );
        } else {
            let Incoming::Message(m) = item else {
                panic!("message {i}: expected it intact, got {item:?}");
            };
            assert_eq!(m.id, r.id);
            assert_eq!(m.sender, "alice");
            assert_eq!(text(&m), long(i));
        }
    }
    expect_up_to_date(&mut b_rx).await;
}

per_mode!(tampered_messages_are_rejected:
    tampered_messages_are_rejected_classical => Classical,
    tampered_messages_are_rejected_hybrid => Hybrid,
);

#[tokio::test]
async fn a_contacts_changed_key_is_detected() {
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Classical).await;
    let pins = Arc::new(Tofu::default());
    let (a, _a_rx, _) = connect_with(&relay.api, "alice", &alice, None, pins.clone())
        .await
        .unwrap();
    send(&a, "bob", "first contact", ModeChoice::Auto).await;
    a.close().await;

    // Bob rotates to a new identity, signed by the current one.
    let bob2 = identity(CryptoMode::Classical);
    let (old_fp, new_fp) = (bob.fingerprint(), bob2.fingerprint());
    rotate_keys(&relay.api, "bob", &bob, &bob2).await;

    // A new client (the bundle cache is per client) sees the new key and refuses it.
    let (a2, mut a2_rx, _) = connect_with(&relay.api, "alice", &alice, None, pins.clone())
        .await
        .unwrap();
    expect_up_to_date(&mut a2_rx).await;
    // In a mode given up front the new key comes with the prekey bundle (`get_contact`), in
    // the adaptive mode over HTTP (then from the client's cache): refused either way.
    for choice in [
        ModeChoice::Explicit(CryptoMode::Classical),
        ModeChoice::Auto,
    ] {
        let e = send_refused(
            &a2,
            "bob",
            b"are you still bob?",
            choice,
            "bob's key changed",
        )
        .await;
        match e {
            ClientError::ContactKeyChanged { name, pinned, now } => {
                assert_eq!(name, "bob");
                assert_eq!(pinned, old_fp.to_hex());
                assert_eq!(now, new_fp.to_hex());
            }
            e => panic!("expected ContactKeyChanged, got {e:?}"),
        }
    }

    // A message from the new key is refused on the receiving side too.
    let (b2, _b2_rx) = connect(&relay, "bob", &bob2).await;
    let r = send(&b2, "alice", "new key, who dis", ModeChoice::Auto).await;
    match next(&mut a2_rx).await {
        Incoming::Rejected { id, sender, error } => {
            assert_eq!(id, r.id);
            assert_eq!(sender.as_deref(), Some("bob"));
            assert!(
                matches!(error, ClientError::ContactKeyChanged { .. }),
                "{error:?}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A first message in an explicit mode claims the contact's prekey bundle while the contact's
/// identity is fetched; a send that the identity then refuses (a mode below the contact's
/// minimum, a key the trust policy does not accept) fails with that reason, not the relay's,
/// and starts no session.
#[tokio::test]
async fn an_explicit_first_message_the_identity_refuses_starts_no_session() {
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Hybrid).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b_rx).await;
    timeout(WAIT, b.publish_prekeys()).await.unwrap().unwrap();
    let pins = Arc::new(Tofu::default());
    let (a, mut a_rx, _) = connect_with(&relay.api, "alice", &alice, None, pins.clone())
        .await
        .unwrap();
    expect_up_to_date(&mut a_rx).await;

    let e = send_refused(
        &a,
        "bob",
        b"too weak",
        ModeChoice::Explicit(CryptoMode::Classical),
        "classical is below bob's minimum",
    )
    .await;
    assert!(
        matches!(&e, ClientError::Invalid(m) if m.contains("cannot receive classical")),
        "{e:?}"
    );

    let stranger = identity(CryptoMode::Hybrid).fingerprint();
    pins.0.lock().unwrap().insert("bob".into(), stranger);
    let e = send_refused(
        &a,
        "bob",
        b"who are you?",
        ModeChoice::Explicit(CryptoMode::Hybrid),
        "bob's key is not the pinned one",
    )
    .await;
    assert!(matches!(e, ClientError::ContactKeyChanged { .. }), "{e:?}");
    assert!(a.sessions_with("bob").unwrap().is_empty());

    // Trusted again: the first message starts a session, and bob reads it.
    pins.0
        .lock()
        .unwrap()
        .insert("bob".into(), bob.fingerprint());
    let r = send(&a, "bob", "hello", ModeChoice::Explicit(CryptoMode::Hybrid)).await;
    assert!(r.session, "{r:?}");
    let m = expect_message(&mut b_rx).await;
    assert_eq!(
        (text(&m), m.session, m.id),
        ("hello".to_owned(), true, r.id)
    );
    assert_eq!(a.sessions_with("bob").unwrap().len(), 1);
}

#[tokio::test]
async fn a_relay_identity_change_is_detected() {
    let relay1 = Relay::start();
    let relay2 = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let info1 = register(&relay1.api, "alice", &alice).await;
    let info2 = register(&relay2.api, "alice", &alice).await;
    assert_ne!(info1.relay_id, info2.relay_id);

    // The second relay, reached with the first one's pin.
    let e = connect_with(
        &relay2.api,
        "alice",
        &alice,
        Some(info1.relay_id.clone()),
        Arc::new(TrustAll),
    )
    .await
    .map(|_| ())
    .expect_err("a different relay identity must be refused");
    match e {
        ClientError::RelayIdentityChanged { pinned, now } => {
            assert_eq!(pinned, info1.relay_id);
            assert_eq!(now, info2.relay_id);
        }
        e => panic!("expected RelayIdentityChanged, got {e:?}"),
    }
    let bob = identity(CryptoMode::Classical);
    let e = timeout(
        WAIT,
        Client::register_only(
            &ClientConfig {
                pinned_relay_id: Some(info1.relay_id.clone()),
                ..ClientConfig::new(&relay2.api, "bob")
            },
            &bob,
        ),
    )
    .await
    .unwrap()
    .expect_err("registration checks the pin too");
    assert!(
        matches!(e, ClientError::RelayIdentityChanged { .. }),
        "{e:?}"
    );

    // With the right pin it connects.
    let (_c, mut rx, _) = connect_with(
        &relay2.api,
        "alice",
        &alice,
        Some(info2.relay_id.clone()),
        Arc::new(TrustAll),
    )
    .await
    .unwrap();
    expect_up_to_date(&mut rx).await;
}

/// A connected client whose relay is replaced, on the same address, by one with another
/// identity: the connection task refuses to authenticate to it (good), but a pending send must
/// then fail with `RelayIdentityChanged` (what `Client::connect` reports for the same
/// situation) instead of waiting for a relay that can never come back.
///
/// The send must fail with `RelayIdentityChanged`; a client that kept retrying would fail with
/// its own 60 s send timeout instead, so no wall-clock bound decides the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_identity_change_while_connected_fails_pending_sends() {
    let mut relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(CryptoMode::Classical);
    let info = register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    let (a, mut a_rx, _) = connect_with(
        &relay.api,
        "alice",
        &alice,
        Some(info.relay_id.clone()),
        Arc::new(TrustAll),
    )
    .await
    .unwrap();
    expect_up_to_date(&mut a_rx).await;
    send(&a, "bob", "to the real relay", ModeChoice::Auto).await;

    // Another relay (another data dir, so another identity) takes over the address; it knows
    // the same users with the same keys, so only its identity differs.
    relay.kill9();
    let impostor = Relay::start_on_ports_of(&relay);
    let info2 = register(&impostor.api, "alice", &alice).await;
    register(&impostor.api, "bob", &bob).await;
    assert_ne!(info2.relay_id, info.relay_id);

    // The bound only keeps a broken client from hanging the suite: a client that kept
    // retrying would fail with its own 60 s send timeout instead, which the match refuses.
    let r = timeout(
        std::time::Duration::from_secs(120),
        a.send("bob", b"to whoever answers", ModeChoice::Auto),
    )
    .await
    .expect(
        "the send neither completed nor failed: the connection task keeps retrying a relay \
         whose identity changed and never reports it",
    );
    match r {
        Err(ClientError::RelayIdentityChanged { pinned, now }) => {
            assert_eq!(pinned, info.relay_id);
            assert_eq!(now, info2.relay_id);
        }
        Ok(receipt) => panic!("a relay with another identity stored the message: {receipt:?}"),
        Err(e) => panic!("expected RelayIdentityChanged, got {e:?}"),
    }
}

/// A send the relay refuses as `unavailable` (its database locked past the writer's busy
/// timeout, as during a restart) is written again by the SDK and completes late instead of
/// failing; the relay counted the refusal, so the retry really happened.
#[tokio::test]
async fn a_send_refused_as_unavailable_is_retried_until_it_is_stored() {
    let (relay, alice, bob) = start_with_alice_and_bob(CryptoMode::Classical).await;
    let (a, _arx) = connect(&relay, "alice", &alice).await;
    let (_b, mut brx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut brx).await;
    // Warm the recipient's bundle so only the store meets the lock.
    send(
        &a,
        "bob",
        "before",
        ModeChoice::Explicit(CryptoMode::Classical),
    )
    .await;
    assert_eq!(expect_message(&mut brx).await.plaintext, b"before");

    let db = relay.db_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        // Longer than the relay's 5 s busy timeout: the first attempt is refused.
        std::thread::sleep(std::time::Duration::from_secs(7));
        c.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let receipt = timeout(
        nano_client::client::SEND_TIMEOUT,
        a.send(
            "bob",
            b"during the outage",
            ModeChoice::Explicit(CryptoMode::Classical),
        ),
    )
    .await
    .expect("send timed out")
    .expect("a retryable refusal must not fail the send");
    locker.join().unwrap();
    assert!(!receipt.duplicate);
    assert_eq!(
        expect_message(&mut brx).await.plaintext,
        b"during the outage"
    );
    let refused = metric(&relay, "nano_messenger_errors_total{code=\"unavailable\"}").await;
    assert!(refused.is_some_and(|n| n >= 1.0), "no unavailable counted");
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Sessions are the default in every mode: the first message is a handshake made from the
/// recipient's prekeys, later ones ride the ratchet, both ways; `send_sealed` and a contact
/// without prekeys get sealed envelopes.
#[tokio::test]
async fn messages_go_on_sessions_by_default() {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(CryptoMode::Classical);
    let carol = identity(CryptoMode::Hybrid);
    for (name, id) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        register(&relay.api, name, id).await;
    }
    let (a, mut a_rx) = connect(&relay, "alice", &alice).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut a_rx).await;
    expect_up_to_date(&mut b_rx).await;
    timeout(WAIT, b.publish_prekeys()).await.unwrap().unwrap();
    timeout(WAIT, a.publish_prekeys()).await.unwrap().unwrap();
    for mode in CryptoMode::ALL {
        for i in 0..4 {
            let to_bob = format!("{mode} a{i}");
            let r = send(&a, "bob", &to_bob, ModeChoice::Explicit(mode)).await;
            assert!(r.session && !r.duplicate, "{r:?}");
            let m = expect_message(&mut b_rx).await;
            assert_eq!((text(&m), m.session, m.crypto_mode), (to_bob, true, mode));
            assert_eq!(m.id, r.id);
            b.ack(&[m.id]).await.unwrap();
            let to_alice = format!("{mode} b{i}");
            let r = send(&b, "alice", &to_alice, ModeChoice::Explicit(mode)).await;
            assert!(r.session);
            let m = expect_message(&mut a_rx).await;
            assert_eq!((text(&m), m.session), (to_alice, true));
            a.ack(&[m.id]).await.unwrap();
        }
    }
    let info = a.sessions_with("bob").unwrap();
    assert_eq!(
        info.iter().map(|s| s.mode).collect::<Vec<_>>(),
        CryptoMode::ALL.to_vec()
    );
    // On request: a sealed envelope.
    let r = timeout(
        WAIT,
        a.send_sealed("bob", b"sealed", ModeChoice::Explicit(CryptoMode::Hybrid)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!r.session);
    let m = expect_message(&mut b_rx).await;
    assert_eq!((text(&m), m.session), ("sealed".to_owned(), false));
    // Carol never published prekeys: she gets sealed envelopes.
    let r = send(
        &a,
        "carol",
        "no prekeys",
        ModeChoice::Explicit(CryptoMode::Hybrid),
    )
    .await;
    assert!(!r.session);
}

/// A contact that lost its session state (a fresh device store) cannot read a message on the
/// old session: it is reported there as `session_unknown`, the sender is told with a notice
/// and its next message starts a new session that reads again (PROTOCOL.md §14.14).
#[tokio::test]
async fn a_lost_session_is_reported_to_both_sides_and_started_again() {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Hybrid);
    let bob = identity(CryptoMode::Hybrid);
    register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    let mode = ModeChoice::Explicit(CryptoMode::Hybrid);
    let (a, mut a_rx) = connect(&relay, "alice", &alice).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut a_rx).await;
    expect_up_to_date(&mut b_rx).await;
    timeout(WAIT, b.publish_prekeys()).await.unwrap().unwrap();
    for text_out in ["one", "two"] {
        assert!(send(&a, "bob", text_out, mode).await.session);
        let m = expect_message(&mut b_rx).await;
        assert_eq!(text(&m), text_out);
        b.ack(&[m.id]).await.unwrap();
    }
    b.close().await;

    // Bob on a new device store: same identity, no sessions, new prekeys.
    let fresh: Arc<dyn nano_client::store::Store> = Arc::new(MemoryStore::new());
    let (b2, mut b2_rx, _) = Client::connect_with_store(
        ClientConfig::new(&relay.api, "bob"),
        Arc::clone(&bob),
        Arc::new(TrustAll),
        fresh,
    )
    .await
    .unwrap();
    expect_up_to_date(&mut b2_rx).await;
    timeout(WAIT, b2.publish_prekeys()).await.unwrap().unwrap();
    let lost = send(&a, "bob", "into the void", mode).await;
    assert!(lost.session);
    // Bob waits for a handshake that never comes, then reports the message (after ~10 s).
    match timeout(std::time::Duration::from_secs(30), b2_rx.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Incoming::Rejected {
            id,
            sender,
            error: ClientError::SessionUnknown { mode: m, .. },
        } => {
            assert_eq!(
                (id, sender.as_deref(), m),
                (lost.id, Some("alice"), CryptoMode::Hybrid)
            );
            b2.ack(&[id]).await.unwrap();
        }
        other => panic!("expected session_unknown, got {other:?}"),
    }
    // Alice is told which message was lost, and her session is gone.
    match timeout(std::time::Duration::from_secs(30), a_rx.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Incoming::SessionReset {
            id,
            peer,
            mode: m,
            lost: which,
        } => {
            assert_eq!(
                (peer.as_str(), m, which),
                ("bob", CryptoMode::Hybrid, lost.id)
            );
            a.ack(&[id]).await.unwrap();
        }
        other => panic!("expected a session reset, got {other:?}"),
    }
    assert!(a.sessions_with("bob").unwrap().is_empty());
    // The next message starts a new session, which bob reads.
    let r = send(&a, "bob", "again", mode).await;
    assert!(r.session);
    let m = expect_message(&mut b2_rx).await;
    assert_eq!((text(&m), m.session), ("again".to_owned(), true));
    assert_eq!(a.sessions_with("bob").unwrap().len(), 1);
}

/// Two clients of one device (one store) send to a contact at once: one session is started,
/// never two, and every message is read, whatever order the two connections' sends reach the
/// inbox in (a message stored before its session's handshake waits for it).
#[tokio::test]
async fn two_clients_on_one_store_start_one_session_and_lose_nothing() {
    let relay = Relay::start();
    let alice = identity(CryptoMode::Classical);
    let bob = identity(CryptoMode::Classical);
    register(&relay.api, "alice", &alice).await;
    register(&relay.api, "bob", &bob).await;
    let (b, mut b_rx) = connect(&relay, "bob", &bob).await;
    expect_up_to_date(&mut b_rx).await;
    timeout(WAIT, b.publish_prekeys()).await.unwrap().unwrap();
    let (a1, _r1) = connect(&relay, "alice", &alice).await;
    let (a2, _r2) = connect(&relay, "alice", &alice).await;
    const N: usize = 20;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..N {
        let c = if i % 2 == 0 { a1.clone() } else { a2.clone() };
        sends.spawn(async move {
            let choice = ModeChoice::Explicit(CryptoMode::Classical);
            timeout(WAIT, c.send("bob", format!("m{i}").as_bytes(), choice))
                .await
                .unwrap()
                .unwrap()
        });
    }
    while let Some(r) = sends.join_next().await {
        assert!(r.unwrap().session);
    }
    let mut got = std::collections::BTreeSet::new();
    while got.len() < N {
        let m = expect_message(&mut b_rx).await;
        assert!(m.session);
        b.ack(&[m.id]).await.unwrap();
        assert!(got.insert(text(&m)), "handed out twice");
    }
    assert_eq!(a1.sessions_with("bob").unwrap().len(), 1);
}

/// The value of the metric series `series` (name and labels, as `/metrics` prints them) on
/// `relay`, if it is there.
async fn metric(relay: &Relay, series: &str) -> Option<f64> {
    let metrics = reqwest::get(format!("{}/metrics", relay.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.parse::<f64>().ok())
}

/// `nano_messenger_prekey_bundles_total{prekey="…"}` on `relay` (0 before the first).
async fn bundles_served(relay: &Relay, prekey: &str) -> u64 {
    let series = format!("nano_messenger_prekey_bundles_total{{prekey=\"{prekey}\"}}");
    metric(relay, &series).await.map_or(0, |v| v as u64)
}

/// A new classical user `name` that sends `bob` one message in its own first session.
async fn first_message_to_bob(relay: &Relay, name: &str) {
    let id = identity(CryptoMode::Classical);
    register(&relay.api, name, &id).await;
    let (c, mut rx) = connect(relay, name, &id).await;
    expect_up_to_date(&mut rx).await;
    let r = send(&c, "bob", name, ModeChoice::Explicit(CryptoMode::Classical)).await;
    assert!(r.session, "{r:?}");
    c.close().await;
}

/// The second publish round: once contacts have claimed a user's one-time prekeys, its next
/// login learns the count from `auth_ok`, uploads a new batch in the background, contacts are
/// handed prekeys of that batch, and the user opens the handshakes made with them.
#[tokio::test]
async fn one_time_prekeys_are_published_again_after_they_run_out() {
    let relay = Relay::start();
    let bob = identity(CryptoMode::Classical);
    register(&relay.api, "bob", &bob).await;
    let bob_connects = || async {
        let cfg = ClientConfig {
            one_time_prekeys: 4,
            ..ClientConfig::new(&relay.api, "bob")
        };
        timeout(
            WAIT,
            Client::connect_with_store(cfg, Arc::clone(&bob), Arc::new(TrustAll), store_of(&bob)),
        )
        .await
        .unwrap()
        .unwrap()
    };
    let (b, mut b_rx, _) = bob_connects().await;
    expect_up_to_date(&mut b_rx).await;
    timeout(WAIT, b.publish_prekeys()).await.unwrap().unwrap();

    // Four first contacts take the four one-time prekeys; the fifth gets the last-resort one.
    for i in 0..5 {
        first_message_to_bob(&relay, &format!("early{i}")).await;
    }
    assert_eq!(bundles_served(&relay, "one_time").await, 4);
    assert_eq!(bundles_served(&relay, "last_resort").await, 1);
    let mut opened = std::collections::HashSet::new();
    for _ in 0..5 {
        let m = expect_message(&mut b_rx).await;
        assert!(m.session);
        b.ack(&[m.id]).await.unwrap();
        opened.insert(text(&m));
    }
    b.flush().await.unwrap();
    b.close().await;

    // The next login tops up in the background; first contacts get the new batch.
    let (b, mut b_rx, _) = bob_connects().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut late = 0;
    while bundles_served(&relay, "one_time").await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new one-time prekeys"
        );
        first_message_to_bob(&relay, &format!("late{late}")).await;
        late += 1;
    }
    // Every message, the handshakes on the new batch's prekeys among them, opens.
    let mut want: std::collections::HashSet<String> = (0..5).map(|i| format!("early{i}")).collect();
    want.extend((0..late).map(|i| format!("late{i}")));
    while opened != want {
        match next(&mut b_rx).await {
            Incoming::Message(m) => {
                assert!(m.session);
                b.ack(&[m.id]).await.unwrap();
                assert!(want.contains(&text(&m)), "{}", text(&m));
                opened.insert(text(&m));
            }
            Incoming::UpToDate | Incoming::Redelivered { .. } => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
