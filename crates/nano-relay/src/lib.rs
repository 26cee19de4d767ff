//! The Nano-Messenger relay: stores and forwards ciphertext it cannot read.
//!
//! Follow a `send_message` from socket to database to the recipient's socket:
//!
//! ```text
//! net::ws_listener    accept, TLS with its channel binding, WebSocket upgrade, connection cap
//! net::connection     the connection loop: a frame is size- and rate-checked, decoded, and
//!                     handed to the session; answers and hub events go out in order
//! protocol            Session, the per-connection handler, one file per command:
//!   login             hello → signed challenge → auth (RFC 9266 binding)
//!   send              send_message: judged by its envelope (payload), queued to the writer
//!   inbox             the inbox on login, fetch, ack, read; pushes from the hub
//!   key_exchange      offers of the relay's signed ephemeral KEM keys (crypto::kex), completion
//!   prekeys           upload_prekeys; get_prekeys and get_contact (one claim each)
//!   identity          get_identity: a user's identity bundle on the connection
//!   replies           the pending-reply queue: `sent` answers in send order, at most 256
//! delivery::writer    the batch writer, on a thread of its own: bounded queue → one
//!                     transaction per batch → `sent` → delivery::hub; acks and reads ride in
//!                     the same commits
//! delivery::hub       the recipient's sessions on this relay, each with a bounded mailbox
//! delivery::fanout    Redis pub/sub: wakes the recipient's sessions on the other relays
//! storage             one Storage trait; SQLite (WAL) and PostgreSQL (pooled, reconnecting);
//!                     migrations, the guide's four indexes, the readiness probe; the
//!                     PrekeyStore (signed prekeys, one-time prekeys in signed batches, an
//!                     at-most-once claim)
//! ```
//!
//! and the rest of the house:
//!
//! ```text
//! main (bin)     CLI, relay.toml, Tokio runtime from [server], signals → start / shutdown
//! server         wires everything; the one shutdown sequence
//! state          Shared: what every connection and request handler holds
//! config         relay.toml, one file per section: the guide's sections plus [storage]
//!                [security] [tls] [limits]; ValidConfig, what start requires; SecretUrl;
//!                machine: the configuration against this machine (TLS files, data dir, fds)
//! net::http      health, ready, metrics, /v1/relay, users, keys, openapi.json (http_listener)
//! directory      users through L1 (in-process) → L2 (Redis) → storage; registration, rotation
//! crypto         the crypto thread pool, batched auth verification, the relay identity, the
//!                key_exchange key service
//! delivery::cleanup  timed deletion of expired messages and old tombstones
//! pools          [memory] pools: pre-generated key pairs, reusable frame buffers
//! telemetry      metrics (the guide's names), rate-limited failure logs, profiling
//! clock          now_ms
//! error          StartupError; RelayError and its one mapping to wire codes and HTTP statuses
//! ```
#![forbid(unsafe_code)]

mod clock;
pub mod config;
mod crypto;
pub mod delivery;
pub mod directory;
pub mod error;
mod net;
mod pools;
mod protocol;
mod server;
mod state;
pub mod storage;
pub mod telemetry;

pub use config::{Environment, RelayConfig, ValidConfig};
pub use error::{RelayError, StartupError};
pub use server::{RunningRelay, start};
