//! Helpers shared by the storage tests.

use nano_crypto::CryptoMode;
use nano_relay::storage::NewMessage;

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
