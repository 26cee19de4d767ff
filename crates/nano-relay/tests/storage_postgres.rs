//! PostgreSQL-specific behaviour (runs when `NANO_TEST_POSTGRES_URL` is set, in its own schema):
//! the guide's indexes exist, relays migrating at the same moment apply each version once, the
//! pool survives the server closing its connections, and the readiness probe fails on a broken
//! schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use nano_crypto::CryptoMode;
use nano_relay::storage::Storage;
use nano_relay::storage::postgres::PostgresStorage;
use nano_testkit::PgDb;

fn migrated(db: &PgDb, connections: usize) -> PostgresStorage {
    let s = PostgresStorage::connect_pool(&db.url, None, connections).unwrap();
    assert_eq!(s.migrate().unwrap(), 6);
    s
}

/// A new migrated database and the storages of two relays sharing it; `None` without a URL.
fn two_relays(name: &str) -> Option<(PgDb, PostgresStorage, PostgresStorage)> {
    let db = PgDb::create(name)?;
    let one = migrated(&db, 4);
    let two = PostgresStorage::connect_pool(&db.url, None, 4).unwrap();
    Some((db, one, two))
}

/// `f(storage, k)` for k in 0..n, each on a thread of its own, all at once, the even ones
/// through `one` and the odd ones through `two`; the results in order of k.
fn at_once<T: Send>(
    one: &PostgresStorage,
    two: &PostgresStorage,
    n: u8,
    f: impl Fn(&PostgresStorage, u8) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let threads: Vec<_> = (0..n)
            .map(|k| {
                let s = if k % 2 == 0 { one } else { two };
                scope.spawn(move || f(s, k))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

#[test]
fn the_pool_reconnects_after_the_server_closes_every_connection() {
    let Some(db) = PgDb::create("pg reconnect") else {
        return;
    };
    let s = migrated(&db, 4);
    let alice = s
        .create_user("alice", b"bundle", &[1; 32], CryptoMode::Hybrid, 1)
        .unwrap();
    assert_eq!(s.probe().unwrap(), 6);
    // What a restart does to the relay's side: every connection closed by the server.
    assert!(db.terminate_connections() >= 1);
    // The next operations find their connections closed, discard them and run on fresh ones.
    for _ in 0..8 {
        assert_eq!(s.user("alice").unwrap().unwrap().id, alice.id);
    }
    assert_eq!(s.probe().unwrap(), 6);
    assert_eq!(s.pending_count(alice.id).unwrap(), 0);
}

#[test]
fn the_probe_fails_without_a_table_the_relay_needs() {
    let Some(db) = PgDb::create("pg probe") else {
        return;
    };
    let s = migrated(&db, 2);
    assert_eq!(s.probe().unwrap(), 6);
    db.execute("DROP TABLE messages").unwrap();
    let e = s.probe().unwrap_err();
    assert!(e.to_string().contains("messages"), "{e}");
    assert_eq!(e.code().as_str(), "unavailable");
}

#[test]
fn the_probe_fails_on_a_read_only_database() {
    let Some(db) = PgDb::create("pg read only") else {
        return;
    };
    let s = migrated(&db, 1);
    db.execute(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name
    ))
    .unwrap();
    // Settings apply to new sessions: the pool's connection goes, a new one reads them.
    db.terminate_connections();
    let e = s.probe().unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn a_column_of_another_type_is_corrupt_data_not_an_outage() {
    let Some(db) = PgDb::create("pg corrupt") else {
        return;
    };
    let s = migrated(&db, 1);
    s.create_user("alice", b"bundle", &[1; 32], CryptoMode::Hybrid, 1)
        .unwrap();
    db.execute("ALTER TABLE users ALTER COLUMN min_mode TYPE BIGINT")
        .unwrap();
    let e = s.user("alice").unwrap_err();
    assert_eq!(e.code().as_str(), "internal", "{e}");
}

#[test]
fn dropping_the_storage_on_an_async_worker_does_not_panic() {
    let Some(db) = PgDb::create("pg drop") else {
        return;
    };
    let s = migrated(&db, 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    // The synchronous client closes on a runtime of its own, which panics inside another.
    rt.block_on(async move {
        tokio::spawn(async move { drop(s) }).await.unwrap();
    });
}

#[test]
fn concurrent_migrations_apply_once_and_create_the_guides_indexes() {
    let Ok(url) = std::env::var("NANO_TEST_POSTGRES_URL") else {
        eprintln!("skipping: NANO_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("nano_test_pgmigrate_{}", std::process::id());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            std::thread::spawn(move || {
                let s = PostgresStorage::connect(&url, Some(&schema)).unwrap();
                s.migrate().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 6);
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let applied: i64 = c
        .query_one(
            &format!("SELECT COUNT(*) FROM {schema}.schema_migrations"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(applied, 6);
    let rows = c
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1",
            &[&schema],
        )
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for idx in [
        "idx_messages_recipient_timestamp",
        "idx_messages_sender_timestamp",
        "idx_messages_unread",
        "idx_messages_cleanup",
    ] {
        assert!(
            names.iter().any(|n| n == idx),
            "{idx} missing from {names:?}"
        );
    }
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    // Bad schema names are refused before they reach SQL.
    assert!(PostgresStorage::connect(&url, Some("x; DROP TABLE users")).is_err());
}

/// Two relays sharing one database: concurrent claims never hand a one-time prekey out twice.
#[test]
fn two_relays_claim_each_one_time_prekey_once() {
    use nano_relay::storage::PrekeyStore;
    let Some((_db, one, two)) = two_relays("pg prekey claim") else {
        return;
    };
    let alice = one
        .create_user("alice", b"bundle", &[1; 32], CryptoMode::Quantum, 1)
        .unwrap();
    // The batch's record, kept.
    one.put_signed_prekeys(&nano_relay::storage::SignedRecord {
        user_id: alice.id,
        mode: CryptoMode::Quantum,
        prekey_id: 1,
        record: b"record",
        now_ms: 1,
        keep_previous: 3,
    })
    .unwrap();
    let batch: Vec<(u32, Vec<u8>)> = (0..200u32).map(|i| (i, i.to_be_bytes().to_vec())).collect();
    let rows = nano_relay::storage::OneTimeRows {
        batch_id: 0,
        signed_id: 1,
        record: b"record",
        prekeys: &batch,
    };
    assert_eq!(
        one.add_one_time_prekeys(alice.id, CryptoMode::Quantum, Some(&rows), false, 1)
            .unwrap(),
        200
    );
    let claimed = common::claim_all_concurrently(&[&one, &two], alice.id, CryptoMode::Quantum, 6);
    assert!(claimed.iter().all(|c| c.record == b"record"));
    let mut unique: Vec<_> = claimed.iter().map(|c| c.one_time.clone()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!((claimed.len(), unique.len()), (200, 200));
}

/// Two relays sharing one database: uploads racing for a user's last batch places never leave
/// it holding more than `MAX_ONE_TIME_BATCHES` batches.
#[test]
fn two_relays_uploading_at_once_keep_the_batch_cap() {
    use nano_relay::storage::PrekeyStore;
    use nano_relay::storage::prekeys::MAX_ONE_TIME_BATCHES;
    let Some((_db, one, two)) = two_relays("pg batch cap") else {
        return;
    };
    let mode = CryptoMode::Hybrid;
    let alice = one
        .create_user("alice", b"bundle", &[1; 32], mode, 1)
        .unwrap();
    one.put_signed_prekeys(&nano_relay::storage::SignedRecord {
        user_id: alice.id,
        mode,
        prekey_id: 1,
        record: b"record",
        now_ms: 1,
        keep_previous: 3,
    })
    .unwrap();
    let upload = |s: &PostgresStorage, batch_id: u32| {
        let prekeys: Vec<(u32, Vec<u8>)> = (0..25u32)
            .map(|i| (batch_id * 100 + i, vec![1; 32]))
            .collect();
        let rows = nano_relay::storage::OneTimeRows {
            batch_id,
            signed_id: 1,
            record: b"record",
            prekeys: &prekeys,
        };
        s.add_one_time_prekeys(alice.id, mode, Some(&rows), false, 1)
    };
    // All places but one taken, then eight uploads at once through two relays.
    for b in 0..MAX_ONE_TIME_BATCHES as u32 - 1 {
        upload(&one, b).unwrap();
    }
    let stored = at_once(&one, &two, 8, |s, k| {
        upload(s, 1_000 + u32::from(k)).is_ok()
    })
    .into_iter()
    .filter(|stored| *stored)
    .count();
    assert_eq!(stored, 1, "exactly one upload takes the last place");
    assert_eq!(
        one.one_time_prekey_count(alice.id, mode).unwrap(),
        MAX_ONE_TIME_BATCHES * 25
    );
}

/// Two relays sharing one database: signed-prekeys records stored for one user at the same
/// moment still leave only the newest and the previous ones asked to be kept.
#[test]
fn two_relays_storing_signed_prekeys_at_once_keep_only_those_asked_for() {
    use nano_relay::storage::{PrekeyStore, SignedRecord};
    let Some((db, one, two)) = two_relays("pg signed trim") else {
        return;
    };
    let mode = CryptoMode::Hybrid;
    let alice = one
        .create_user("alice", b"bundle", &[1; 32], mode, 1)
        .unwrap();
    at_once(&one, &two, 8, |s, k| {
        s.put_signed_prekeys(&SignedRecord {
            user_id: alice.id,
            mode,
            prekey_id: u32::from(k) + 1,
            record: b"record",
            now_ms: 10,
            keep_previous: 1,
        })
        .unwrap()
    });
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let kept: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM signed_prekeys WHERE user_id = $1",
            &[&alice.id],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "the newest record and one previous");
}

/// Two relays sharing one database: batches for one recipient stored at the same moment never
/// fill its inbox past the quota.
#[test]
fn two_relays_storing_at_once_keep_the_inbox_quota() {
    use nano_relay::storage::{NewMessage, StoreOutcome};
    let Some((_db, one, two)) = two_relays("pg inbox quota") else {
        return;
    };
    let mode = CryptoMode::Classical;
    let alice = one.create_user("alice", b"a", &[1; 32], mode, 1).unwrap();
    let bob = one.create_user("bob", b"b", &[2; 32], mode, 1).unwrap();
    const QUOTA: u64 = 50;
    let batch = |k: u8| -> Vec<NewMessage> {
        (0..10u8)
            .map(|i| NewMessage {
                message_id: [k, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                recipient_id: bob.id,
                sender_id: Some(alice.id),
                crypto_mode: mode,
                timestamp_ms: 1,
                payload: nano_proto::Payload(vec![k, i]),
            })
            .collect()
    };
    // Eight batches of ten at once through two relays, for an inbox of fifty.
    let stored = at_once(&one, &two, 8, |s, k| {
        s.store_batch(&batch(k), QUOTA).unwrap()
    })
    .into_iter()
    .flatten()
    .filter(|o| matches!(o, StoreOutcome::Stored(_)))
    .count();
    assert_eq!(stored as u64, QUOTA);
    assert_eq!(one.pending_count(bob.id).unwrap(), QUOTA);
}

/// Version 5 turns the text payloads of a version-4 database into bytes, by the same rule as
/// SQLite (`common::V4_PAYLOADS`).
#[test]
fn migration_5_turns_text_payloads_into_bytes() {
    let Some(db) = PgDb::create("pg migrate 5") else {
        return;
    };
    // Opening creates `schema_migrations`; the first four versions are applied by hand.
    let s = PostgresStorage::connect_pool(&db.url, None, 2).unwrap();
    for (version, sql) in &nano_relay::storage::schema::POSTGRES[..4] {
        db.execute(sql).unwrap();
        db.execute(&format!(
            "INSERT INTO schema_migrations VALUES ({version}, 0)"
        ))
        .unwrap();
    }
    let hex = |b: &[u8]| {
        format!(
            "'\\x{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    };
    db.execute(&common::v4_rows(hex)).unwrap();
    assert_eq!(s.migrate().unwrap(), 6);
    common::assert_v4_payloads_migrated(&s);
}
