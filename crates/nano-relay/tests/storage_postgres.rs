//! PostgreSQL-specific behaviour (runs when `NANO_TEST_POSTGRES_URL` is set, in its own schema):
//! the guide's indexes exist, and relays migrating at the same moment apply each version once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_relay::storage::Storage;
use nano_relay::storage::postgres::PostgresStorage;

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
        assert_eq!(t.join().unwrap(), 1);
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let applied: i64 = c
        .query_one(
            &format!("SELECT COUNT(*) FROM {schema}.schema_migrations"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(applied, 1);
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
