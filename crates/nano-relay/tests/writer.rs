//! The batch writer against real SQLite: group commit within `message_batch_size`, lingering
//! only after a full batch, outcomes in order, push delivery to registered sessions, drain on
//! close.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nano_relay::delivery::hub::{Hub, Mailbox, SessionEvent};
use nano_relay::delivery::writer::{self, WriteRequest, Writer, WriterConfig};
use nano_relay::storage::sqlite::SqliteStorage;
use nano_relay::storage::{Mark, MarkKind, Storage, StoreOutcome};
use nano_relay::telemetry::metrics::Metrics;
use tokio::sync::oneshot;

fn setup() -> (Arc<dyn Storage>, Arc<Hub>, Metrics, (i64, i64)) {
    let s = SqliteStorage::in_memory().unwrap();
    s.migrate().unwrap();
    let users = common::two_users(&s);
    let storage: Arc<dyn Storage> = Arc::new(s);
    (
        storage,
        Arc::new(Hub::default()),
        Metrics::new(true, false).unwrap(),
        users,
    )
}

fn cfg(batch_size: usize, quota: u64) -> WriterConfig {
    WriterConfig {
        batch_size,
        batch_timeout: Duration::from_millis(20),
        inbox_quota: quota,
        queue_capacity: 64,
    }
}

fn request(
    id: u8,
    to: i64,
) -> (
    WriteRequest,
    oneshot::Receiver<Result<StoreOutcome, nano_relay::RelayError>>,
) {
    let (tx, rx) = oneshot::channel();
    (
        WriteRequest {
            msg: common::msg(id, to, None, i64::from(id)),
            sender: None,
            received: Instant::now(),
            reply: tx,
        },
        rx,
    )
}

#[tokio::test(flavor = "current_thread")]
async fn queued_messages_commit_in_batches_of_at_most_batch_size() {
    let (storage, hub, metrics, (_, bob)) = setup();
    let (handle, writer) = Writer::new(
        Arc::clone(&storage),
        cfg(3, 100),
        hub,
        None,
        metrics.clone(),
    );
    // All seven are queued before the writer starts.
    let mut replies = Vec::new();
    for i in 1..=7u8 {
        let (req, rx) = request(i, bob);
        handle.submit(req).await.unwrap();
        replies.push(rx);
    }
    let task = writer.start().unwrap();
    let mut seqs = Vec::new();
    for rx in replies {
        match rx.await.unwrap().unwrap() {
            StoreOutcome::Stored(seq) => seqs.push(seq),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "outcomes in submission order: {seqs:?}"
    );
    // 3 + 3 + 1: never more than batch_size per transaction.
    assert_eq!(metrics.batch_size.get_sample_count(), 3);
    assert_eq!(metrics.batch_size.get_sample_sum() as u64, 7);
    assert_eq!(storage.pending_count(bob).unwrap(), 7);
    drop(handle);
    task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_message_is_committed_without_waiting_for_company() {
    let (storage, hub, metrics, (_, bob)) = setup();
    let mut c = cfg(100, 100);
    c.batch_timeout = Duration::from_secs(3600);
    let (handle, task) = writer::spawn(storage, c, hub, None, metrics).unwrap();
    let (req, rx) = request(1, bob);
    handle.submit(req).await.unwrap();
    // Long before the hour-long batch timeout (the bound only keeps a broken writer from
    // hanging the suite; no machine is that slow): the writer does not linger after a
    // partial batch.
    let outcome = tokio::time::timeout(Duration::from_secs(120), rx).await;
    assert!(
        matches!(outcome, Ok(Ok(Ok(StoreOutcome::Stored(_))))),
        "{outcome:?}"
    );
    drop(handle);
    task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn duplicates_quota_and_push_delivery() {
    let (storage, hub, metrics, (alice, bob)) = setup();
    let (mailbox, mut events) = Mailbox::new(8, 1 << 20);
    hub.register(bob, 1, mailbox);
    let (handle, task) =
        writer::spawn(storage, cfg(10, 2), Arc::clone(&hub), None, metrics).unwrap();
    let mut replies = Vec::new();
    for (id, to) in [(1u8, bob), (1, bob), (2, bob), (3, bob), (4, alice)] {
        let (req, rx) = request(id, to);
        handle.submit(req).await.unwrap();
        replies.push(rx);
    }
    let mut outcomes = Vec::new();
    for rx in replies {
        outcomes.push(rx.await.unwrap().unwrap());
    }
    assert!(matches!(outcomes[0], StoreOutcome::Stored(_)));
    assert_eq!(
        outcomes[1],
        StoreOutcome::Duplicate(match outcomes[0] {
            StoreOutcome::Stored(s) => s,
            _ => unreachable!(),
        })
    );
    assert!(matches!(outcomes[2], StoreOutcome::Stored(_)));
    assert_eq!(outcomes[3], StoreOutcome::InboxFull, "bob's quota is 2");
    assert!(
        matches!(outcomes[4], StoreOutcome::Stored(_)),
        "alice has room"
    );
    // Bob's session got exactly his two stored messages, in order; the duplicate of one this
    // writer pushed is not pushed again.
    let (mut pushed, mut again) = (Vec::new(), Vec::new());
    while let Some(ev) = events.try_recv() {
        match ev {
            SessionEvent::Deliver(m) => pushed.push(m.message_id[0]),
            SessionEvent::Redeliver(m) => again.push(m.message_id[0]),
            SessionEvent::Wake => panic!("no wake-ups without fan-out"),
        }
    }
    assert_eq!(pushed, vec![1, 2]);
    assert!(again.is_empty(), "{again:?}");
    drop(handle);
    task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_session_queue_marks_a_slow_reader() {
    let (storage, hub, metrics, (_, bob)) = setup();
    let (mailbox, _events) = Mailbox::new(1, 1 << 20);
    let kill = mailbox.kill.clone();
    hub.register(bob, 1, mailbox);
    let (handle, task) =
        writer::spawn(storage, cfg(10, 100), Arc::clone(&hub), None, metrics).unwrap();
    for i in 1..=3u8 {
        let (req, rx) = request(i, bob);
        handle.submit(req).await.unwrap();
        assert!(matches!(
            rx.await.unwrap().unwrap(),
            StoreOutcome::Stored(_)
        ));
    }
    assert!(
        kill.is_cancelled(),
        "a session that cannot take more is told to close"
    );
    drop(handle);
    task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_mailbox_over_its_byte_budget_marks_a_slow_reader() {
    let (storage, hub, metrics, (_, bob)) = setup();
    // Room for many events but only two payloads' worth of bytes (each counts payload + 64).
    let (mailbox, mut events) = Mailbox::new(100, 2 * (9 + 64));
    let kill = mailbox.kill.clone();
    let account = mailbox.clone();
    hub.register(bob, 1, mailbox);
    let (handle, task) =
        writer::spawn(storage, cfg(10, 100), Arc::clone(&hub), None, metrics).unwrap();
    for i in 1..=2u8 {
        let (req, rx) = request(i, bob);
        handle.submit(req).await.unwrap();
        assert!(matches!(
            rx.await.unwrap().unwrap(),
            StoreOutcome::Stored(_)
        ));
    }
    assert!(!kill.is_cancelled(), "two payloads fit");
    assert_eq!(account.queued_bytes(), 2 * (9 + 64));
    // Taking one off the queue frees its bytes.
    events.try_recv().unwrap();
    assert_eq!(account.queued_bytes(), 9 + 64);
    for i in 3..=4u8 {
        let (req, rx) = request(i, bob);
        handle.submit(req).await.unwrap();
        assert!(matches!(
            rx.await.unwrap().unwrap(),
            StoreOutcome::Stored(_)
        ));
    }
    assert!(kill.is_cancelled(), "the fourth payload is over budget");
    drop(handle);
    task.await.unwrap();
}

/// Acks and reads queued together are applied in one commit, each answered with its own
/// count, and the writer still drains and stops when the last handle goes.
#[tokio::test(flavor = "current_thread")]
async fn marks_queued_together_are_applied_and_answered_each() {
    let (storage, hub, metrics, (alice, bob)) = setup();
    let (handle, task) =
        writer::spawn(Arc::clone(&storage), cfg(10, 100), hub, None, metrics).unwrap();
    for i in 1..=3u8 {
        let (req, rx) = request(i, bob);
        handle.submit(req).await.unwrap();
        rx.await.unwrap().unwrap();
    }
    let (read, ack_other, ack) = tokio::join!(
        handle.mark(Mark::new(bob, MarkKind::Read, &[[1; 16], [3; 16]])),
        handle.mark(Mark::new(alice, MarkKind::Ack, &[[1; 16]])),
        handle.mark(Mark::new(bob, MarkKind::Ack, &[[1; 16], [2; 16], [7; 16]])),
    );
    assert_eq!((read.unwrap(), ack_other.unwrap(), ack.unwrap()), (2, 0, 2));
    let left = storage.pending(bob, 0, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message_id[0], 3);
    assert!(left[0].read_at.is_some());
    drop(handle);
    task.await.unwrap();
}

/// Messages and marks queued together share a commit; when a row the database refuses fails
/// it, the other messages and the marks are committed on their own and answered as usual, and
/// only the refused message fails.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_row_fails_neither_its_batch_nor_the_marks_committed_with_it() {
    let (storage, hub, metrics, (alice, bob)) = setup();
    // Stored behind the writer's back, so that everything below is queued before it starts.
    storage
        .store_batch(&[common::msg(1, bob, None, 1)], 100)
        .unwrap();
    let (handle, writer) = Writer::new(Arc::clone(&storage), cfg(10, 100), hub, None, metrics);
    // Queued before the writer starts: one transaction for all of them.
    let (good, good_rx) = request(2, bob);
    let (bad, bad_rx) = request(3, bob + alice + 1000);
    handle.submit(good).await.unwrap();
    handle.submit(bad).await.unwrap();
    let marker = handle.clone();
    let ack =
        tokio::spawn(async move { marker.mark(Mark::new(bob, MarkKind::Ack, &[[1; 16]])).await });
    // The spawned task runs (queues its ack and waits for the answer) before this one resumes.
    tokio::task::yield_now().await;
    let task = writer.start().unwrap();
    let (ack, good, bad) = (ack.await.unwrap(), good_rx.await, bad_rx.await);
    assert_eq!(ack.unwrap(), 1);
    assert!(matches!(good.unwrap().unwrap(), StoreOutcome::Stored(_)));
    assert!(bad.unwrap().is_err());
    let left = storage.pending(bob, 0, 10).unwrap();
    assert_eq!(
        left.iter().map(|m| m.message_id[0]).collect::<Vec<_>>(),
        vec![2]
    );
    drop(handle);
    task.await.unwrap();
}

/// A commit whose answer was lost (the connection dropped during COMMIT) stored the message,
/// but the writer answered `unavailable` and pushed nothing. The sender's resend finds it stored:
/// the recipient's session gets it then, whatever its cursor; once acknowledged, a resend
/// pushes nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_resend_of_a_message_stored_but_never_pushed_delivers_it() {
    let (storage, hub, metrics, (_, bob)) = setup();
    let (mailbox, mut events) = Mailbox::new(8, 1 << 20);
    hub.register(bob, 1, mailbox);
    // Stored behind the writer's back, as the lost commit did.
    let first = storage
        .store_batch(&[common::msg(7, bob, None, 7)], 100)
        .unwrap();
    let StoreOutcome::Stored(seq) = first[0] else {
        panic!("{first:?}")
    };
    let (handle, task) = writer::spawn(
        Arc::clone(&storage),
        cfg(10, 100),
        Arc::clone(&hub),
        None,
        metrics,
    )
    .unwrap();
    let (req, rx) = request(7, bob);
    handle.submit(req).await.unwrap();
    assert_eq!(rx.await.unwrap().unwrap(), StoreOutcome::Duplicate(seq));
    match events.try_recv() {
        Some(SessionEvent::Redeliver(m)) => assert_eq!((m.seq, m.message_id), (seq, [7; 16])),
        other => panic!("expected a redelivery, got {other:?}"),
    }
    storage.ack(bob, &[[7; 16]], 8).unwrap();
    let (req, rx) = request(7, bob);
    handle.submit(req).await.unwrap();
    assert_eq!(rx.await.unwrap().unwrap(), StoreOutcome::Duplicate(seq));
    assert!(
        events.try_recv().is_none(),
        "an acknowledged message is not pushed again"
    );
    drop(handle);
    task.await.unwrap();
}
