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
        payload: format!("payload {id}"),
    }
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
) -> Vec<Vec<u8>> {
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
