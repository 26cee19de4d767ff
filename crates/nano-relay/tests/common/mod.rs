//! Helpers shared by the storage tests.
#![allow(clippy::unwrap_used, dead_code)]

use nano_crypto::CryptoMode;
use nano_relay::storage::{NewMessage, RelayError, Rotation, Storage};

/// A hybrid message with id `[id; 16]` from `from` to `to` at time `t`.
pub(crate) fn msg(id: u8, to: i64, from: Option<i64>, t: i64) -> NewMessage {
    NewMessage {
        message_id: [id; 16],
        recipient_id: to,
        sender_id: from,
        crypto_mode: CryptoMode::Hybrid,
        timestamp_ms: t,
        payload: nano_proto::Payload(format!("payload {id}").into_bytes()),
    }
}

/// Payloads as schema version 4 stored them (text: what the JSON frame carried), each with the
/// bytes version 5 makes of it: base64 becomes its bytes, any other text its UTF-8 bytes.
pub(crate) const V4_PAYLOADS: &[(&str, &[u8])] = &[
    ("AQID", &[1, 2, 3]),
    ("Load test message 1", b"Load test message 1"),
    // Text that happens to be base64 is its bytes, which re-encode to the same string.
    ("test", &[0xb5, 0xeb, 0x2d]),
    // Non-canonical base64 (trailing bits set) is text, as the relay's decoder says.
    ("AR==", b"AR=="),
    ("", &[]),
];

/// SQL that fills a version-4 database: users 1 (alice) and 2 (bob), and one pending message
/// to bob per [`V4_PAYLOADS`] entry (id `[i + 1; 16]`); `hex` writes the backend's byte literal.
pub(crate) fn v4_rows(hex: impl Fn(&[u8]) -> String) -> String {
    let mut sql = format!(
        "INSERT INTO users (username, bundle, fingerprint, min_mode, created_at, updated_at)
         VALUES ('alice', {}, {}, 1, 0, 0), ('bob', {}, {}, 2, 0, 0);",
        hex(b"a"),
        hex(&[1; 32]),
        hex(b"b"),
        hex(&[2; 32])
    );
    // Prekeys in the formats of bundle version 1, which version 6 deletes.
    sql.push_str(&format!(
        "INSERT INTO signed_prekeys (user_id, crypto_mode, prekey_id, record, uploaded_at)
         VALUES (2, 2, 1, {}, 0);
         INSERT INTO one_time_prekeys (user_id, crypto_mode, prekey_id, record, uploaded_at)
         VALUES (2, 2, 5, {}, 0);",
        hex(b"v1 signed prekeys"),
        hex(b"v1 one-time prekey")
    ));
    for (i, (text, _)) in V4_PAYLOADS.iter().enumerate() {
        let id = u8::try_from(i + 1).unwrap();
        sql.push_str(&format!(
            "INSERT INTO messages (message_id, recipient_id, sender_id, crypto_mode, timestamp, payload)
             VALUES ({}, 2, 1, 2, {i}, '{text}');",
            hex(&[id; 16])
        ));
    }
    sql
}

/// Bob's inbox after migrating [`v4_rows`]: every payload as [`V4_PAYLOADS`] says; his
/// version-1 prekeys are gone (he uploads new ones at his next login).
pub(crate) fn assert_v4_payloads_migrated(s: &dyn Storage) {
    let hybrid = nano_crypto::CryptoMode::Hybrid;
    assert_eq!(s.signed_prekeys(2, hybrid).unwrap(), None);
    assert_eq!(s.one_time_prekey_count(2, hybrid).unwrap(), 0);
    assert_eq!(s.prekey_counts(2).unwrap(), None);
    let inbox = s.pending(2, 0, 100).unwrap();
    let got: Vec<&[u8]> = inbox.iter().map(|m| m.payload.as_slice()).collect();
    let want: Vec<&[u8]> = V4_PAYLOADS.iter().map(|(_, b)| *b).collect();
    assert_eq!(got, want);
}

/// Registers alice (classical) and bob (hybrid); returns their ids.
pub(crate) fn two_users(s: &dyn Storage) -> (i64, i64) {
    let a = s
        .create_user("alice", b"bundle-a", &[1; 32], CryptoMode::Classical, 1)
        .unwrap();
    let b = s
        .create_user("bob", b"bundle-b", &[2; 32], CryptoMode::Hybrid, 1)
        .unwrap();
    (a.id, b.id)
}

/// `Storage::replace_bundle` with its fields in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rotate(
    s: &dyn Storage,
    username: &str,
    expected: &[u8; 32],
    version: u64,
    bundle: &[u8],
    fingerprint: &[u8; 32],
    min_mode: CryptoMode,
    now_ms: i64,
) -> Result<(), RelayError> {
    s.replace_bundle(&Rotation {
        username,
        expected,
        version,
        bundle,
        fingerprint,
        min_mode,
        now_ms,
    })
}

/// `threads` claimers at once, spread over `stores` (relays sharing one database), each claiming
/// `user`'s one-time prekeys of `mode` until none is left; every record any of them got.
#[allow(dead_code)] // not every test binary that includes this module claims prekeys
pub(crate) fn claim_all_concurrently(
    stores: &[&(dyn nano_relay::storage::PrekeyStore + Sync)],
    user: i64,
    mode: CryptoMode,
    threads: usize,
) -> Vec<nano_relay::storage::Claimed> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let store = stores[i % stores.len()];
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(r) = store.claim_one_time_prekey(user, mode).unwrap() {
                        mine.push(r);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
