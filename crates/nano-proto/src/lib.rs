//! Nano-Messenger wire formats, free of I/O: what travels between clients and the relay.
//!
//! ```text
//! types     Username, MessageId, Bytes (base64 in JSON): validated on construction
//! frames    ClientFrame / RelayFrame: the WebSocket messages, JSON text form
//! payload   Payload: a message's bytes, what it is (sealed, session, notice, opaque), its id
//!           and limit
//! notice    Notice: what a receiver that cannot read a session payload tells its sender
//! binary    the compact binary form of the same frames
//! signed    the exact bytes of every signed statement (claims, rotation, challenge, auth, kex)
//! binding   ChannelBinding: RFC 9266 tls-exporter, what ties a login to one connection
//! rest      bodies of the HTTP API (registration, lookup, rotation, relay info, errors)
//! error     ProtoError and ErrorCode: every failure's stable wire code, in one place
//! ```
//!
//! A frame is decoded with [`ClientFrame::from_json`] or [`ClientFrame::from_binary`] (relay
//! side) and [`RelayFrame`]'s counterparts (client side); both forms carry exactly the same
//! information and round-trip losslessly.
#![forbid(unsafe_code)]

pub mod binary;
pub mod binding;
pub mod error;
pub mod frames;
pub mod notice;
pub mod payload;
pub mod rest;
pub mod signed;
pub mod types;

pub use binding::{BindingKind, ChannelBinding};
pub use error::{ErrorCode, ProtoError};
pub use frames::{ClientFrame, RelayFrame};
pub use payload::{MAX_MESSAGE_BYTES, MAX_MESSAGE_JSON_LEN, Payload, PayloadKind};
pub use types::{Bytes, MessageId, PrekeyCounts, Username};

/// Most message ids one `ack` or `read` frame may carry.
pub const MAX_IDS_PER_FRAME: usize = 1024;
/// How old an envelope may be when a client opens it: 30 days (2,592,000,000 ms) before the
/// client's clock, by the sender's authenticated `timestamp_ms` (PROTOCOL.md §12, "Replays").
/// Also the longest a relay keeps an undelivered message (`message_retention_days` ≤ 30).
pub const REPLAY_WINDOW_MS: i64 = 30 * DAY_MS;

/// How far ahead of the client's clock an envelope's `timestamp_ms` may be: 10 minutes.
pub const CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;

/// How long a relay keeps the tombstone of an acked message, (recipient, message id), to answer
/// a replay as a duplicate: 31 days, at least [`REPLAY_WINDOW_MS`] + [`CLOCK_SKEW_MS`], so a
/// replay either meets its tombstone or is too old for any client to open.
pub const TOMBSTONE_KEEP_MS: i64 = 31 * DAY_MS;

const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch on this machine's clock (0 before it): the unit and
/// origin of every `timestamp_ms` and `expires_at_ms` (PROTOCOL.md §6, §11).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Length of the standard padded base64 of `n` bytes: `4 × ⌈n / 3⌉`.
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The largest plaintext (bytes) that can be sent in `mode` through a relay whose
/// `send_message` limit is `message_limit` payload bytes (its `max_message_bytes`, from `GET
/// /v1/relay`), as a sealed envelope or in any session payload (a handshake included): the
/// payload must fit the limit, and the plaintext
/// [`nano_crypto::envelope::MAX_PLAINTEXT_LEN`]. Zero when not even an empty message fits.
pub const fn max_plaintext_len(mode: nano_crypto::CryptoMode, message_limit: usize) -> usize {
    let sealed = nano_crypto::envelope::overhead(mode);
    let session = nano_crypto::session::max_overhead(mode);
    let overhead = if sealed > session { sealed } else { session };
    let fits = message_limit.saturating_sub(overhead);
    if fits < nano_crypto::envelope::MAX_PLAINTEXT_LEN {
        fits
    } else {
        nano_crypto::envelope::MAX_PLAINTEXT_LEN
    }
}
/// Absolute cap on any opaque byte field other than the message (keys, signatures, nonces).
pub const MAX_FIELD_BYTES: usize = 32 * 1024;
