//! The SQLite backend against a real SQLite file: migrations and indexes, users, batched and
//! deduplicated stores with quotas, paging, ack/read, cleanup, durability across reopening.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use nano_crypto::CryptoMode;
use nano_relay::storage::sqlite::SqliteStorage;
use nano_relay::storage::{NewMessage, Storage, StorageError, StoreOutcome};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nano-relay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn msg(id: u8, to: i64, from: Option<i64>, t: i64) -> NewMessage {
    NewMessage {
        message_id: [id; 16],
        recipient_id: to,
        sender_id: from,
        crypto_mode: CryptoMode::Hybrid,
        timestamp_ms: t,
        payload: format!("payload {id}"),
    }
}

fn setup(s: &SqliteStorage) -> (i64, i64) {
    assert_eq!(s.migrate().unwrap(), 1);
    let a = s
        .create_user("alice", b"bundle-a", &[1; 32], CryptoMode::Classical, 1)
        .unwrap();
    let b = s
        .create_user("bob", b"bundle-b", &[2; 32], CryptoMode::Hybrid, 1)
        .unwrap();
    (a.id, b.id)
}

#[test]
fn migrations_are_versioned_idempotent_and_create_the_guides_indexes() {
    let dir = TempDir::new("migrate");
    let s = SqliteStorage::open(&dir.0.join("relay.db")).unwrap();
    assert_eq!(s.schema_version().unwrap(), 0);
    assert_eq!(s.migrate().unwrap(), 1);
    assert_eq!(s.migrate().unwrap(), 1);
    assert_eq!(s.schema_version().unwrap(), 1);
    s.ping().unwrap();
    let conn = rusqlite::Connection::open(dir.0.join("relay.db")).unwrap();
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names.sort();
    for idx in [
        "idx_messages_cleanup",
        "idx_messages_recipient_timestamp",
        "idx_messages_sender_timestamp",
        "idx_messages_unread",
    ] {
        assert!(
            names.iter().any(|n| n == idx),
            "{idx} missing from {names:?}"
        );
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // A database from a newer build is refused, not silently used.
    conn.execute("INSERT INTO schema_migrations VALUES (99, 0)", [])
        .unwrap();
    assert!(matches!(
        s.migrate(),
        Err(StorageError::SchemaTooNew {
            found: 99,
            supported: 1
        })
    ));
}

#[test]
fn users_register_once_and_rotate_only_from_the_current_key() {
    let s = SqliteStorage::in_memory().unwrap();
    let (a, _) = setup(&s);
    assert!(matches!(
        s.create_user("alice", b"other", &[9; 32], CryptoMode::Quantum, 2),
        Err(StorageError::NameTaken)
    ));
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(
        (u.id, u.bundle.as_slice(), u.fingerprint, u.min_mode),
        (a, &b"bundle-a"[..], [1; 32], CryptoMode::Classical)
    );
    assert_eq!(s.user("nobody").unwrap(), None);
    s.replace_bundle(
        "alice",
        &[1; 32],
        b"bundle-a2",
        &[3; 32],
        CryptoMode::Hybrid,
        5,
    )
    .unwrap();
    assert!(matches!(
        s.replace_bundle("alice", &[1; 32], b"x", &[4; 32], CryptoMode::Hybrid, 6),
        Err(StorageError::Conflict)
    ));
    assert!(matches!(
        s.replace_bundle("nobody", &[1; 32], b"x", &[4; 32], CryptoMode::Hybrid, 6),
        Err(StorageError::NotFound)
    ));
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!((u.fingerprint, u.min_mode), ([3; 32], CryptoMode::Hybrid));
}

#[test]
fn batches_dedup_enforce_quota_and_page_in_order() {
    let s = SqliteStorage::in_memory().unwrap();
    let (alice, bob) = setup(&s);
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
    let page = s.pending(bob, 0, 2).unwrap();
    assert_eq!(
        page.iter().map(|m| m.message_id[0]).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(page[0].sender.as_deref(), Some("alice"));
    assert_eq!(page[1].sender, None);
    assert_eq!(page[0].payload, "payload 1");
    assert_eq!(page[0].crypto_mode, CryptoMode::Hybrid);
    let rest = s.pending(bob, page[1].seq, 10).unwrap();
    assert_eq!(
        rest.iter().map(|m| m.message_id[0]).collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn ack_read_and_cleanup() {
    let s = SqliteStorage::in_memory().unwrap();
    let (alice, bob) = setup(&s);
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
    // Cleanup removes acked rows and undelivered ones older than the cut-off, in bounded batches.
    assert_eq!(s.cleanup(350, 1).unwrap(), 1);
    assert_eq!(s.cleanup(350, 100).unwrap(), 2);
    assert_eq!(s.cleanup(350, 100).unwrap(), 0);
    let left: Vec<u8> = s
        .pending(bob, 0, 10)
        .unwrap()
        .iter()
        .map(|m| m.message_id[0])
        .collect();
    assert_eq!(left, vec![4, 5]);
}

#[test]
fn committed_messages_survive_reopening() {
    let dir = TempDir::new("durable");
    let path = dir.0.join("nested").join("relay.db");
    {
        let s = SqliteStorage::open(&path).unwrap();
        let (_, bob) = setup(&s);
        s.store_batch(&[msg(7, bob, None, 1)], 10).unwrap();
    }
    let s = SqliteStorage::open(&path).unwrap();
    assert_eq!(s.migrate().unwrap(), 1);
    let bob = s.user("bob").unwrap().unwrap();
    let inbox = s.pending(bob.id, 0, 10).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_id, [7; 16]);
}
