//! The storage contract, run against every backend: SQLite always, PostgreSQL when
//! `NANO_TEST_POSTGRES_URL` is set (each test in its own schema, so parallel tests never share
//! rows). Without the URL the PostgreSQL cases print why they skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::msg;
use nano_crypto::CryptoMode;
use nano_relay::storage::postgres::PostgresStorage;
use nano_relay::storage::{Mark, MarkKind, RelayError, Storage, StoreOutcome};

fn setup(s: &dyn Storage) -> (i64, i64) {
    assert_eq!(s.migrate().unwrap(), 6);
    assert_eq!(s.migrate().unwrap(), 6);
    assert_eq!(s.probe().unwrap(), 6);
    common::two_users(s)
}

/// A fresh PostgreSQL schema for one test, dropped afterwards.
struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn postgres(test: &str) -> Option<(PostgresStorage, PgSchema)> {
    let Ok(url) = std::env::var("NANO_TEST_POSTGRES_URL") else {
        eprintln!("skipping PostgreSQL case of {test}: NANO_TEST_POSTGRES_URL is not set");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("nano_test_{test}_{}_{nanos}", std::process::id());
    let s = PostgresStorage::connect(&url, Some(&name)).unwrap();
    Some((s, PgSchema { url, name }))
}

macro_rules! contract {
    ($($name:ident),*) => {
        mod sqlite_backend {
            $(#[test]
            fn $name() {
                super::$name(&nano_relay::storage::sqlite::SqliteStorage::in_memory().unwrap());
            })*
        }
        /// The production path: a file through `storage::open` (WAL, a pool of 4 readers,
        /// migrations), as the relay runs it.
        mod sqlite_file_backend {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("relay.db").display());
                let s = nano_relay::storage::open(&url, 4).unwrap();
                super::$name(s.as_ref());
            })*
        }
        mod postgres_backend {
            $(#[test]
            fn $name() {
                if let Some((s, _schema)) = super::postgres(stringify!($name)) {
                    super::$name(&s);
                }
            })*
        }
    };
}

contract!(
    users_register_once_and_rotate_only_from_the_current_key,
    batches_dedup_enforce_quota_and_page_in_order,
    ack_read_and_cleanup,
    a_mark_batch_applies_every_mark_in_order,
    messages_and_marks_commit_together,
    prekeys_are_claimed_once_and_signed_records_keep_their_grace,
    payloads_are_stored_as_bytes
);

/// Payloads are bytes (BLOB / BYTEA): NUL, bytes that are no UTF-8, nothing at all and the
/// largest payload come back exactly.
fn payloads_are_stored_as_bytes(s: &dyn Storage) {
    let (alice, bob) = setup(s);
    let payloads: Vec<Vec<u8>> = vec![
        (0..=255u8).collect(),
        vec![0; 3],
        vec![0xc3, 0x28, 0xff],
        vec![],
        vec![0x5a; nano_proto::MAX_MESSAGE_BYTES],
    ];
    let batch: Vec<_> = payloads
        .iter()
        .zip(1u8..)
        .map(|(p, id)| {
            let mut m = msg(id, bob, Some(alice), i64::from(id));
            m.payload = nano_proto::Payload(p.clone());
            m
        })
        .collect();
    s.store_batch(&batch, 100).unwrap();
    let got: Vec<Vec<u8>> = s
        .pending(bob, 0, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.payload.0)
        .collect();
    assert_eq!(got, payloads);
}

fn prekeys_are_claimed_once_and_signed_records_keep_their_grace(s: &dyn Storage) {
    use nano_relay::storage::prekeys::MAX_ONE_TIME_BATCHES;
    use nano_relay::storage::{OneTimeRows, SignedRecord};
    let (a, b) = setup(s);
    let mode = CryptoMode::Hybrid;
    assert_eq!(s.signed_prekeys(a, mode).unwrap(), None);
    assert_eq!(s.claim_one_time_prekey(a, mode).unwrap(), None);
    let record = |id: u32, t: i64, keep: u32, bytes: &'static [u8]| SignedRecord {
        user_id: a,
        mode,
        prekey_id: id,
        record: bytes,
        now_ms: t,
        keep_previous: keep,
    };
    s.put_signed_prekeys(&record(1, 10, 1, b"spk-1")).unwrap();
    s.put_signed_prekeys(&record(2, 20, 1, b"spk-2")).unwrap();
    assert_eq!(s.signed_prekeys(a, mode).unwrap().unwrap(), b"spk-2");
    // Another mode and another user are separate.
    assert_eq!(s.signed_prekeys(a, CryptoMode::Quantum).unwrap(), None);
    assert_eq!(s.signed_prekeys(b, mode).unwrap(), None);
    // A third record with one previous kept: the first is gone, the second stays.
    s.put_signed_prekeys(&record(3, 30, 1, b"spk-3")).unwrap();
    assert_eq!(s.signed_prekeys(a, mode).unwrap().unwrap(), b"spk-3");

    let rows = |first: u32, n: u32| -> Vec<(u32, Vec<u8>)> {
        (first..first + n)
            .map(|i| (i, format!("otk-{i}").into_bytes()))
            .collect()
    };
    let batch =
        |signed_id: u32, record: &'static [u8], prekeys: &'static [(u32, Vec<u8>)]| OneTimeRows {
            batch_id: prekeys[0].0,
            signed_id,
            record,
            prekeys,
        };
    let forty: &'static [(u32, Vec<u8>)] = Box::leak(rows(100, 40).into_boxed_slice());
    let add = |m: CryptoMode, rows: Option<&OneTimeRows<'_>>, replace: bool| {
        s.add_one_time_prekeys(a, m, rows, replace, 5)
    };
    assert_eq!(
        add(mode, Some(&batch(3, b"batch-100", forty)), false).unwrap(),
        40
    );
    // Re-uploading the same batch changes nothing.
    assert_eq!(
        add(mode, Some(&batch(3, b"batch-100", forty)), false).unwrap(),
        40
    );
    // Another batch under a held batch id is refused, and nothing of it is stored.
    let clash = Box::leak(vec![(100, b"x".to_vec()), (900, b"y".to_vec())].into_boxed_slice());
    assert!(matches!(
        add(mode, Some(&batch(3, b"batch-other", clash)), false),
        Err(RelayError::Proto(_))
    ));
    assert_eq!(s.one_time_prekey_count(a, mode).unwrap(), 40);
    // A batch under a record that is not kept (trimmed by a newer upload, or never uploaded)
    // is refused, and nothing of it is stored.
    let late = Box::leak(rows(300, 2).into_boxed_slice());
    for gone in [1, 9] {
        assert!(matches!(
            add(mode, Some(&batch(gone, b"batch-300", late)), false),
            Err(RelayError::Proto(_))
        ));
    }
    assert_eq!(s.one_time_prekey_count(a, mode).unwrap(), 40);
    // Replacing: the held ones are gone, the new ones are held (other modes untouched).
    s.put_signed_prekeys(&SignedRecord {
        mode: CryptoMode::Quantum,
        ..record(1, 10, 1, b"q-spk-1")
    })
    .unwrap();
    let other = Box::leak(rows(7, 1).into_boxed_slice());
    assert_eq!(
        add(CryptoMode::Quantum, Some(&batch(1, b"q", other)), false).unwrap(),
        1
    );
    let three = Box::leak(rows(200, 3).into_boxed_slice());
    assert_eq!(
        add(mode, Some(&batch(3, b"batch-200", three)), true).unwrap(),
        3
    );
    assert_eq!(add(mode, None, true).unwrap(), 0);
    assert_eq!(s.one_time_prekey_count(a, CryptoMode::Quantum).unwrap(), 1);
    assert_eq!(
        add(mode, Some(&batch(3, b"batch-100", forty)), false).unwrap(),
        40
    );
    assert_eq!(s.one_time_prekey_count(b, mode).unwrap(), 0);
    // Eight claimers at once take every prekey exactly once, each with its batch's record.
    let claimed = common::claim_all_concurrently(&[s], a, mode, 8);
    assert!(claimed.iter().all(|c| c.record == b"batch-100"));
    let mut sorted: Vec<_> = claimed.iter().map(|c| c.one_time.clone()).collect();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 40, "every prekey handed out once");
    assert_eq!(claimed.len(), 40, "no prekey handed out twice");
    assert_eq!(s.one_time_prekey_count(a, mode).unwrap(), 0);
    assert_eq!(s.claim_one_time_prekey(a, mode).unwrap(), None);
    // The signed record is still there: the caller falls back to its last-resort prekey.
    assert!(s.signed_prekeys(a, mode).unwrap().is_some());

    // At most MAX_ONE_TIME_BATCHES batches with prekeys left (empty ones are dropped).
    for i in 0..MAX_ONE_TIME_BATCHES as u32 {
        let one = Box::leak(rows(1_000 + i, 1).into_boxed_slice());
        add(mode, Some(&batch(3, b"small", one)), false).unwrap();
    }
    let past = Box::leak(rows(5_000, 1).into_boxed_slice());
    assert!(matches!(
        add(mode, Some(&batch(3, b"small", past)), false),
        Err(RelayError::Proto(_))
    ));
    assert_eq!(
        s.one_time_prekey_count(a, mode).unwrap(),
        MAX_ONE_TIME_BATCHES
    );
    let first = s.claim_one_time_prekey(a, mode).unwrap().unwrap();
    assert_eq!(
        (first.record.as_slice(), first.one_time.as_slice()),
        (&b"small"[..], &b"otk-1000"[..])
    );
    assert_eq!(
        add(mode, Some(&batch(3, b"small", past)), false).unwrap(),
        MAX_ONE_TIME_BATCHES
    );

    // Rotation: once record 3 is no longer kept, its batches go with their prekeys.
    s.put_signed_prekeys(&record(4, 40, 1, b"spk-4")).unwrap();
    assert_eq!(
        s.one_time_prekey_count(a, mode).unwrap(),
        MAX_ONE_TIME_BATCHES
    );
    s.put_signed_prekeys(&record(5, 50, 1, b"spk-5")).unwrap();
    assert_eq!(s.one_time_prekey_count(a, mode).unwrap(), 0);
    assert_eq!(s.claim_one_time_prekey(a, mode).unwrap(), None);
    assert_eq!(s.one_time_prekey_count(a, CryptoMode::Quantum).unwrap(), 1);
    // Claims take the oldest batch first, whatever the ids.
    let older = Box::leak(rows(50, 2).into_boxed_slice());
    let newer = Box::leak(rows(20, 2).into_boxed_slice());
    s.add_one_time_prekeys(a, mode, Some(&batch(5, b"older", older)), false, 60)
        .unwrap();
    s.add_one_time_prekeys(a, mode, Some(&batch(5, b"newer", newer)), false, 70)
        .unwrap();
    let order: Vec<Vec<u8>> = std::iter::from_fn(|| s.claim_one_time_prekey(a, mode).unwrap())
        .map(|c| c.one_time)
        .collect();
    assert_eq!(order, [b"otk-50", b"otk-51", b"otk-20", b"otk-21"]);
}

fn users_register_once_and_rotate_only_from_the_current_key(s: &dyn Storage) {
    let (a, _) = setup(s);
    assert!(matches!(
        s.create_user("alice", b"other", &[9; 32], CryptoMode::Quantum, 2),
        Err(RelayError::NameTaken)
    ));
    // One bundle belongs to one name.
    assert!(matches!(
        s.create_user("carol", b"bundle-a", &[1; 32], CryptoMode::Classical, 2),
        Err(RelayError::KeyTaken)
    ));
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(
        (
            u.id,
            u.bundle.as_slice(),
            u.fingerprint,
            u.min_mode,
            u.key_version
        ),
        (a, &b"bundle-a"[..], [1; 32], CryptoMode::Classical, 0)
    );
    assert_eq!(s.user("nobody").unwrap(), None);
    // Not onto bob's bundle.
    assert!(matches!(
        common::rotate(
            s,
            "alice",
            &[1; 32],
            0,
            b"bundle-b",
            &[2; 32],
            CryptoMode::Hybrid,
            5
        ),
        Err(RelayError::KeyTaken)
    ));
    common::rotate(
        s,
        "alice",
        &[1; 32],
        0,
        b"bundle-a2",
        &[3; 32],
        CryptoMode::Hybrid,
        5,
    )
    .unwrap();
    assert!(matches!(
        common::rotate(
            s,
            "alice",
            &[1; 32],
            1,
            b"x",
            &[4; 32],
            CryptoMode::Hybrid,
            6
        ),
        Err(RelayError::Conflict)
    ));
    assert!(matches!(
        common::rotate(
            s,
            "nobody",
            &[1; 32],
            0,
            b"x",
            &[4; 32],
            CryptoMode::Hybrid,
            6
        ),
        Err(RelayError::NotFound)
    ));
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(
        (u.fingerprint, u.min_mode, u.key_version),
        ([3; 32], CryptoMode::Hybrid, 1)
    );
    // Back to the first bundle: the version moves on, so a statement for version 0 (A→B) is
    // stale even though the fingerprint is A's again.
    common::rotate(
        s,
        "alice",
        &[3; 32],
        1,
        b"bundle-a",
        &[1; 32],
        CryptoMode::Classical,
        7,
    )
    .unwrap();
    assert!(matches!(
        common::rotate(
            s,
            "alice",
            &[1; 32],
            0,
            b"bundle-a2",
            &[3; 32],
            CryptoMode::Hybrid,
            8
        ),
        Err(RelayError::Conflict)
    ));
    assert_eq!(s.user("alice").unwrap().unwrap().key_version, 2);
}

fn batches_dedup_enforce_quota_and_page_in_order(s: &dyn Storage) {
    let (alice, bob) = setup(s);
    let out = s
        .store_batch(
            &[
                msg(1, bob, Some(alice), 10),
                msg(2, bob, None, 11),
                msg(1, bob, Some(alice), 12),
            ],
            3,
        )
        .unwrap();
    let StoreOutcome::Stored(first) = out[0] else {
        panic!("{out:?}")
    };
    assert!(matches!(out[1], StoreOutcome::Stored(s2) if s2 > first));
    assert_eq!(out[2], StoreOutcome::Duplicate(first));
    // Same id to another recipient is a different message.
    let out = s
        .store_batch(
            &[
                msg(1, alice, Some(bob), 13),
                msg(3, bob, None, 14),
                msg(4, bob, None, 15),
            ],
            3,
        )
        .unwrap();
    assert!(matches!(out[0], StoreOutcome::Stored(_)));
    assert!(matches!(out[1], StoreOutcome::Stored(_)));
    assert_eq!(out[2], StoreOutcome::InboxFull);
    assert_eq!(s.pending_count(bob).unwrap(), 3);
    // A full inbox still recognises a resend of what it holds.
    let out = s
        .store_batch(&[msg(5, bob, None, 16), msg(1, bob, Some(alice), 17)], 3)
        .unwrap();
    assert_eq!(
        out,
        vec![StoreOutcome::InboxFull, StoreOutcome::Duplicate(first)]
    );
    let page = s.pending(bob, 0, 2).unwrap();
    assert_eq!(
        page.iter().map(|m| m.message_id[0]).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(page[0].sender.as_deref(), Some("alice"));
    assert_eq!(page[1].sender, None);
    assert_eq!(page[0].payload.as_slice(), b"payload 1");
    assert_eq!(page[0].crypto_mode, CryptoMode::Hybrid);
    let rest = s.pending(bob, page[1].seq, 10).unwrap();
    assert_eq!(
        rest.iter().map(|m| m.message_id[0]).collect::<Vec<_>>(),
        vec![3]
    );
}

fn ack_read_and_cleanup(s: &dyn Storage) {
    let (alice, bob) = setup(s);
    s.store_batch(
        &(1..=5)
            .map(|i| msg(i, bob, Some(alice), i64::from(i) * 100))
            .collect::<Vec<_>>(),
        100,
    )
    .unwrap();
    assert_eq!(
        s.mark_read(bob, &[[1; 16], [2; 16], [9; 16]], 1000)
            .unwrap(),
        2
    );
    assert_eq!(s.mark_read(bob, &[[1; 16]], 1001).unwrap(), 0);
    assert_eq!(s.pending(bob, 0, 10).unwrap()[0].read_at, Some(1000));
    // Another user cannot ack bob's messages.
    assert_eq!(s.ack(alice, &[[1; 16]], 1100).unwrap(), 0);
    assert_eq!(s.ack(bob, &[[1; 16], [2; 16]], 1100).unwrap(), 2);
    assert_eq!(s.ack(bob, &[[1; 16]], 1101).unwrap(), 0);
    assert_eq!(s.pending_count(bob).unwrap(), 3);
    // An acked message is a tombstone: out of the inbox, and a replay of its id is a
    // duplicate, not a new message.
    let replay = s
        .store_batch(&[msg(1, bob, Some(alice), 1200)], 100)
        .unwrap();
    assert!(
        matches!(replay[..], [StoreOutcome::Duplicate(_)]),
        "{replay:?}"
    );
    assert_eq!(s.pending_count(bob).unwrap(), 3);
    // Cleanup removes undelivered rows older than the expiry cut-off and tombstones older than
    // theirs, in bounded batches; younger tombstones stay.
    assert_eq!(s.cleanup(350, 1100, 1).unwrap(), 1);
    assert_eq!(s.cleanup(350, 1100, 100).unwrap(), 0);
    let replay = s
        .store_batch(&[msg(1, bob, Some(alice), 1200)], 100)
        .unwrap();
    assert!(
        matches!(replay[..], [StoreOutcome::Duplicate(_)]),
        "{replay:?}"
    );
    assert_eq!(s.cleanup(350, 1101, 100).unwrap(), 2);
    assert_eq!(s.cleanup(350, 1101, 100).unwrap(), 0);
    let left: Vec<u8> = s
        .pending(bob, 0, 10)
        .unwrap()
        .iter()
        .map(|m| m.message_id[0])
        .collect();
    assert_eq!(left, vec![4, 5]);
}

/// Several frames' marks in one transaction: each counted on its own, in order, only on the
/// marking user's own messages, and a repeated mark in the same batch changes nothing more.
fn a_mark_batch_applies_every_mark_in_order(s: &dyn Storage) {
    let (alice, bob) = setup(s);
    s.store_batch(
        &(1..=4)
            .map(|i| msg(i, bob, Some(alice), i64::from(i) * 100))
            .collect::<Vec<_>>(),
        100,
    )
    .unwrap();
    let marks = [
        Mark::new(bob, MarkKind::Read, &[[1; 16], [2; 16]]),
        Mark::new(alice, MarkKind::Ack, &[[1; 16], [2; 16], [3; 16]]),
        Mark::new(bob, MarkKind::Ack, &[[2; 16], [3; 16], [9; 16]]),
        Mark::new(bob, MarkKind::Ack, &[[3; 16]]),
        Mark::new(bob, MarkKind::Read, &[[1; 16], [4; 16]]),
    ];
    assert_eq!(s.mark_batch(&marks, 500).unwrap(), vec![2, 0, 2, 0, 1]);
    assert_eq!(s.mark_batch(&[], 501).unwrap(), Vec::<u64>::new());
    let left = s.pending(bob, 0, 10).unwrap();
    assert_eq!(
        left.iter()
            .map(|m| (m.message_id[0], m.read_at))
            .collect::<Vec<_>>(),
        vec![(1, Some(500)), (4, Some(500))]
    );
}

/// Messages and marks in one call: the marks apply after the messages (an ack of a message of
/// the same call counts), each part answers as its own call would; a message the database
/// refuses fails its part, and a mark part that shares its transaction fails with it and
/// changes nothing.
fn messages_and_marks_commit_together(s: &dyn Storage) {
    let (alice, bob) = setup(s);
    s.store_batch(
        &[msg(1, bob, Some(alice), 100), msg(2, bob, Some(alice), 200)],
        100,
    )
    .unwrap();
    let (stored, marked) = s.store_and_mark(
        &[msg(3, bob, Some(alice), 300), msg(2, bob, Some(alice), 200)],
        100,
        &[
            Mark::new(bob, MarkKind::Ack, &[[1; 16]]),
            Mark::new(bob, MarkKind::Ack, &[[3; 16]]),
            Mark::new(alice, MarkKind::Ack, &[[2; 16]]),
        ],
        400,
    );
    let stored = stored.unwrap();
    assert!(matches!(stored[0], StoreOutcome::Stored(_)), "{stored:?}");
    assert!(
        matches!(stored[1], StoreOutcome::Duplicate(_)),
        "{stored:?}"
    );
    assert_eq!(marked.unwrap(), vec![1, 1, 0]);
    let ids = |s: &dyn Storage| -> Vec<u8> {
        s.pending(bob, 0, 10)
            .unwrap()
            .iter()
            .map(|m| m.message_id[0])
            .collect()
    };
    assert_eq!(ids(s), vec![2]);

    // No user has this id: the foreign key refuses the row.
    let (stored, marked) = s.store_and_mark(
        &[
            msg(4, bob, Some(alice), 500),
            msg(5, bob + alice + 1000, None, 500),
        ],
        100,
        &[Mark::new(bob, MarkKind::Ack, &[[2; 16]])],
        600,
    );
    assert!(stored.is_err());
    match marked {
        // Separate transactions: the ack applied.
        Ok(n) => {
            assert_eq!(n, vec![1]);
            assert!(!ids(s).contains(&2));
        }
        // One transaction: nothing of it is committed.
        Err(e) => {
            assert_eq!(Some(&e), stored.as_ref().err());
            assert_eq!(ids(s), vec![2]);
        }
    }
    assert!(!ids(s).contains(&4), "the refused batch stored nothing");
}
