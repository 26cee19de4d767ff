//! From a committed send to the recipient's socket, and the ends of a message's life.
//!
//! ```text
//! writer    bounded queues → batched commits (group commit) of sends and of ack/read marks;
//!           answers `sent` only after commit, then hands the message to the hub
//! hub       authenticated sessions by user; bounded per-session delivery queues (mailboxes)
//! fanout    Redis pub/sub between relays: delivery wake-ups, bundle cache invalidation
//! cleanup   timed deletion, in bounded batches, of expired messages and old tombstones
//! ```

pub(crate) mod cleanup;
pub(crate) mod fanout;
pub mod hub;
pub mod writer;
