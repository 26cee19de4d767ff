//! SQLite-specific behaviour against a real SQLite file: migrations and indexes, WAL,
//! durability across reopening. The storage contract both backends share is in
//! `storage_contract.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

mod common;

use common::msg;
use nano_relay::storage::sqlite::SqliteStorage;
use nano_relay::storage::{RelayError, Storage};

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

fn setup(s: &SqliteStorage) -> (i64, i64) {
    assert_eq!(s.migrate().unwrap(), 6);
    common::two_users(s)
}

#[test]
fn migrations_are_versioned_idempotent_and_create_the_guides_indexes() {
    let dir = TempDir::new("migrate");
    let s = SqliteStorage::open(&dir.0.join("relay.db")).unwrap();
    assert_eq!(s.schema_version().unwrap(), 0);
    assert_eq!(s.migrate().unwrap(), 6);
    assert_eq!(s.migrate().unwrap(), 6);
    assert_eq!(s.schema_version().unwrap(), 6);
    assert_eq!(s.probe().unwrap(), 6);
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
        Err(RelayError::SchemaTooNew {
            found: 99,
            supported: 6
        })
    ));
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
    assert_eq!(s.migrate().unwrap(), 6);
    let bob = s.user("bob").unwrap().unwrap();
    let inbox = s.pending(bob.id, 0, 10).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_id, [7; 16]);
}

/// With a pool, reads go to read-only connections and every write to the writer; each write is
/// visible to the next read on any connection.
#[test]
fn pooled_connections_write_through_the_writer_and_read_committed_data() {
    let dir = TempDir::new("pool");
    let s = SqliteStorage::open_pool(&dir.0.join("relay.db"), 4).unwrap();
    let (alice, bob) = setup(&s);
    let out = s
        .store_batch(
            &[
                common::msg(1, bob, Some(alice), 10),
                common::msg(2, bob, None, 11),
            ],
            100,
        )
        .unwrap();
    assert_eq!(out.len(), 2);
    for _ in 0..8 {
        assert_eq!(s.pending_count(bob).unwrap(), 2);
    }
    assert_eq!(s.mark_read(bob, &[[1; 16]], 20).unwrap(), 1);
    assert!(s.pending(bob, 0, 10).unwrap()[0].read_at.is_some());
    assert_eq!(s.ack(bob, &[[1; 16]], 21).unwrap(), 1);
    for _ in 0..8 {
        assert_eq!(s.pending_count(bob).unwrap(), 1);
    }
    let before = s.user("alice").unwrap().unwrap();
    common::rotate(
        &s,
        "alice",
        &before.fingerprint,
        before.key_version,
        b"new",
        &[9; 32],
        nano_crypto::CryptoMode::Hybrid,
        30,
    )
    .unwrap();
    for _ in 0..8 {
        assert_eq!(s.user("alice").unwrap().unwrap().fingerprint, [9; 32]);
    }
}

/// Checkpoints are wanted only after writes, and copy the log's pages into the database file;
/// an in-memory database has no log.
#[test]
fn a_checkpoint_copies_the_log_into_the_database_only_after_writes() {
    let dir = TempDir::new("checkpoint");
    let path = dir.0.join("relay.db");
    let s = SqliteStorage::open(&path).unwrap();
    let (_, bob) = setup(&s);
    s.checkpoint().unwrap();
    assert!(!s.wants_checkpoint());
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let batch: Vec<_> = (0..=250u8)
        .map(|i| msg(i, bob, None, i64::from(i)))
        .collect();
    s.store_batch(&batch, 1000).unwrap();
    assert!(s.wants_checkpoint());
    assert_eq!(size(), before, "new pages wait in the log");
    s.checkpoint().unwrap();
    assert!(!s.wants_checkpoint());
    assert!(size() > before, "the log's pages were copied back");
    let mem = SqliteStorage::in_memory().unwrap();
    setup(&mem);
    assert!(!mem.wants_checkpoint());
}

/// The readiness probe fails when a table the relay needs is gone, or the file is read-only,
/// and a row of another type is corrupt data (`internal`), not an outage.
#[test]
fn the_probe_fails_without_a_table_and_bad_rows_are_corrupt_data() {
    let dir = TempDir::new("probe");
    let path = dir.0.join("relay.db");
    let s = SqliteStorage::open(&path).unwrap();
    setup(&s);
    assert_eq!(s.probe().unwrap(), 6);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("UPDATE users SET min_mode = 'x' WHERE username = 'alice'")
        .unwrap();
    let e = s.user("alice").unwrap_err();
    assert_eq!(e.code().as_str(), "internal", "{e}");
    other.execute_batch("DROP TABLE messages").unwrap();
    let e = s.probe().unwrap_err();
    assert!(e.to_string().contains("messages"), "{e}");
    assert_eq!(e.code().as_str(), "unavailable");
}

/// A user's prekeys go with the user: the prekey tables cascade on delete.
#[test]
fn prekeys_are_deleted_with_their_user() {
    use nano_crypto::CryptoMode;
    use nano_relay::storage::{PrekeyStore, SignedRecord};
    let dir = TempDir::new("prekey-cascade");
    let s = SqliteStorage::open(&dir.0.join("relay.db")).unwrap();
    s.migrate().unwrap();
    let u = s
        .create_user("carol", b"bundle", &[4; 32], CryptoMode::Quantum, 1)
        .unwrap();
    s.put_signed_prekeys(&SignedRecord {
        user_id: u.id,
        mode: CryptoMode::Quantum,
        prekey_id: 1,
        record: b"spk",
        now_ms: 1,
        keep_previous: 0,
    })
    .unwrap();
    let batch = vec![(1, b"otk".to_vec())];
    let rows = nano_relay::storage::OneTimeRows {
        batch_id: 1,
        signed_id: 1,
        record: b"spk",
        prekeys: &batch,
    };
    assert_eq!(
        s.add_one_time_prekeys(u.id, CryptoMode::Quantum, Some(&rows), false, 1)
            .unwrap(),
        1
    );
    let conn = rusqlite::Connection::open(dir.0.join("relay.db")).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    conn.execute("DELETE FROM users WHERE id = ?1", [u.id])
        .unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM signed_prekeys) + (SELECT COUNT(*) FROM one_time_prekeys)
                + (SELECT COUNT(*) FROM one_time_batches)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(s.signed_prekeys(u.id, CryptoMode::Quantum).unwrap(), None);
}

/// Version 5 turns the text payloads of a version-4 database into bytes, as JSON would read
/// them (`common::V4_PAYLOADS`).
#[test]
fn migration_5_turns_text_payloads_into_bytes() {
    let dir = TempDir::new("migrate5");
    let path = dir.0.join("relay.db");
    let s = SqliteStorage::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    for (version, sql) in &nano_relay::storage::schema::SQLITE[..4] {
        raw.execute_batch(sql).unwrap();
        raw.execute(
            "INSERT INTO schema_migrations VALUES (?1, 0)",
            rusqlite::params![version],
        )
        .unwrap();
    }
    let hex = |b: &[u8]| {
        format!(
            "X'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    };
    raw.execute_batch(&common::v4_rows(hex)).unwrap();
    assert_eq!(s.migrate().unwrap(), 6);
    common::assert_v4_payloads_migrated(&s);
    let kind: String = raw
        .query_row("SELECT DISTINCT typeof(payload) FROM messages", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kind, "blob");
}
