//! Nano-Messenger wire formats, free of I/O: what travels between clients and the relay.
//!
//! ```text
//! types     Username, MessageId, Bytes (base64 in JSON): validated on construction
//! frames    ClientFrame / RelayFrame: the WebSocket messages, JSON text form
//! binary    the compact binary form of the same frames
//! signed    the exact bytes of every signed statement (claims, rotation, auth, key exchange)
//! rest      bodies of the HTTP API (registration, lookup, rotation, relay info, errors)
//! error     ProtoError and ErrorCode: every failure's stable wire code, in one place
//! ```
//!
//! A frame is decoded with [`ClientFrame::from_json`] or [`ClientFrame::from_binary`] (relay
//! side) and [`RelayFrame`]'s counterparts (client side); both forms carry exactly the same
//! information and round-trip losslessly.
#![forbid(unsafe_code)]

pub mod binary;
pub mod error;
pub mod frames;
pub mod rest;
pub mod signed;
pub mod types;

pub use error::{ErrorCode, ProtoError};
pub use frames::{ClientFrame, RelayFrame};
pub use types::{Bytes, MessageId, Username};

/// Most message ids one `ack` or `read` frame may carry.
pub const MAX_IDS_PER_FRAME: usize = 1024;
/// Absolute cap on a `send_message` payload (the relay's `[limits]` are usually lower).
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Absolute cap on any opaque byte field other than the message (keys, signatures, nonces).
pub const MAX_FIELD_BYTES: usize = 32 * 1024;
