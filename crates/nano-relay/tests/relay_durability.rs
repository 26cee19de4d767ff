//! Durability against the real binary: every message the relay answered `sent` for before a
//! `kill -9` is delivered after a restart on the same data dir and database, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::collections::HashSet;

use nano_crypto::CryptoMode;
use nano_proto::{MessageId, RelayFrame};
use relay_common::{Config, Msg, Relay, User, Ws, random_id, send_frame, start_with_alice_and_bob};

const COUNT: usize = 200;

fn payload(i: usize) -> String {
    format!("durable message {i}")
}

/// Pipelines `ids` from `ws` to bob without waiting for answers.
async fn pipeline(ws: &mut Ws, ids: &[MessageId]) {
    for (i, id) in ids.iter().enumerate() {
        ws.feed(&send_frame(
            "bob",
            &payload(i),
            CryptoMode::Hybrid,
            Some(*id),
        ))
        .await;
    }
    ws.flush().await;
}

/// Logs bob in and reads his whole inbox.
async fn bobs_inbox(relay: &Relay, bob: &User) -> (u64, Vec<Msg>) {
    let (mut b, login) = bob.connect(relay).await;
    let mut all = login.msgs;
    if login.fetched.more {
        all.extend(b.fetch_all(login.fetched.last_seq.unwrap()).await);
    }
    (login.pending, all)
}

/// 200 pipelined sends, `kill -9` right after the last `sent`, restart: all 200 delivered, once
/// each, in order.
async fn acknowledged_messages_survive_kill_9(cfg: Config) {
    let (mut relay, alice, bob) = start_with_alice_and_bob(&cfg).await;
    let (mut a, _) = alice.connect(&relay).await;
    let ids: Vec<MessageId> = (0..COUNT).map(|_| random_id()).collect();
    pipeline(&mut a, &ids).await;
    let mut acked = Vec::with_capacity(COUNT);
    while acked.len() < COUNT {
        let (id, duplicate) = a.expect_sent().await;
        assert!(!duplicate);
        acked.push(id);
    }
    relay.kill9();
    assert_eq!(acked, ids, "answers come in the order of the sends");
    drop(a);

    relay.restart().await;
    let (pending, inbox) = bobs_inbox(&relay, &bob).await;
    assert_eq!(pending, COUNT as u64);
    assert_eq!(inbox.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(m.message, payload(i));
        assert_eq!(m.sender.as_deref(), Some("alice"));
        assert_eq!(m.mode, CryptoMode::Hybrid);
    }
}

on_each_storage!(acknowledged_messages_survive_kill_9: acknowledged_messages_survive_kill_9_sqlite, acknowledged_messages_survive_kill_9_postgres);

/// `kill -9` while sends are still in flight: every acknowledged message is delivered once;
/// nothing unsent appears; and a client resending everything with the same ids after the restart
/// ends with each message stored exactly once.
async fn a_kill_mid_stream_loses_nothing_acknowledged(cfg: Config) {
    let (mut relay, alice, bob) = start_with_alice_and_bob(&cfg).await;
    let (mut a, _) = alice.connect(&relay).await;
    let ids: Vec<MessageId> = (0..COUNT).map(|_| random_id()).collect();
    pipeline(&mut a, &ids).await;
    let mut acked = HashSet::new();
    while acked.len() < COUNT / 2 {
        match a.recv().await {
            RelayFrame::Sent { id, duplicate } => {
                assert!(!duplicate);
                acked.insert(id);
            }
            f => panic!("expected sent, got {f:?}"),
        }
    }
    relay.kill9();
    drop(a);

    relay.restart().await;
    let (_, inbox) = bobs_inbox(&relay, &bob).await;
    let delivered: Vec<MessageId> = inbox.iter().map(|m| m.id).collect();
    let unique: HashSet<MessageId> = delivered.iter().copied().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a message was delivered twice"
    );
    assert!(acked.is_subset(&unique), "an acknowledged message was lost");
    let position = |id: &MessageId| ids.iter().position(|x| x == id);
    let order: Vec<usize> = delivered
        .iter()
        .map(|id| position(id).expect("a message that was never sent"))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );
    for (m, i) in inbox.iter().zip(&order) {
        assert_eq!(m.message, payload(*i));
    }

    // The client retries everything with the same ids: stored ones are duplicates.
    let (mut a, _) = alice.connect(&relay).await;
    pipeline(&mut a, &ids).await;
    for id in &ids {
        let (got, duplicate) = a.expect_sent().await;
        assert_eq!(got, *id);
        assert_eq!(duplicate, unique.contains(id), "duplicate flag of {id}");
    }
    let (pending, inbox) = bobs_inbox(&relay, &bob).await;
    assert_eq!(pending, COUNT as u64);
    let mut all: Vec<MessageId> = inbox.iter().map(|m| m.id).collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "each message stored exactly once");
}

on_each_storage!(a_kill_mid_stream_loses_nothing_acknowledged: a_kill_mid_stream_loses_nothing_acknowledged_sqlite, a_kill_mid_stream_loses_nothing_acknowledged_postgres);
