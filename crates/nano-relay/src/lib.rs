//! The Nano-Messenger relay: stores and forwards ciphertext it cannot read.
//!
//! ```text
//! main (bin)   CLI, relay.toml, Tokio runtime from [server], signals → server::start / shutdown
//! server       wires everything below; the one shutdown sequence
//!
//! request flow (the guide's three-stage pipeline):
//!   ws          accept, TLS, limits, per-connection I/O loop        (async I/O workers)
//!   session     login, send, inbox paging, ack/read, key_exchange  (protocol state)
//!   login       hello → signed challenge → auth, bound to the TLS channel (RFC 9266)
//!   payload     a send judged by its envelope's clear header: id, mode; opaque test payloads
//!   auth        batched auth signature checks through BatchVerifier ┐
//!   kex         ephemeral KEM keys from the KeyCache, signed        ├ crypto_pool (bounded)
//!   writer      bounded queue → batched commits → hub push          (storage stage)
//!   hub         authenticated sessions by user; bounded delivery queues
//!   fanout      Redis pub/sub between relays: delivery wake-ups, cache invalidation
//!   http_listener  API connections: cap, header/request timeouts, TLS, bounded drain
//!   http        health, ready, metrics, /v1/relay, users, keys, openapi.json
//!
//! building blocks:
//!   config      relay.toml: the guide's sections plus [storage] [security] [tls] [limits]
//!   config_env  the configuration against this machine: TLS files, data dir, descriptors
//!   storage     one Storage trait; SQLite (WAL) and PostgreSQL (r2d2 pool, reconnects on its
//!               own); migrations, the four indexes; the readiness probe
//!   directory   users through L1 (l1_cache) → L2 (l2_cache, Redis) → storage
//!   tls         rustls server config; self-signed certificate for development
//!   relay_identity  the relay's long-term keys in the data directory
//!   rate_limit  token buckets per connection and per address
//!   metrics     Prometheus metrics with the guide's names
//!   pools       [memory] pools: pre-generated key pairs, reusable frame buffers
//!   cleanup     timed deletion of acked and expired rows
//!   profiling   pprof flame graphs (feature `profiling`)
//!   error       RelayError and its wire codes, in one place
//!   log_limit   repeated failures logged once per interval with a count
//! ```
#![forbid(unsafe_code)]

pub mod auth;
pub mod cleanup;
pub mod config;
pub mod config_env;
pub mod crypto_pool;
pub mod directory;
pub mod error;
pub mod fanout;
pub mod http;
pub mod http_listener;
pub mod hub;
pub mod kex;
pub mod l1_cache;
pub mod l2_cache;
mod log_limit;
pub mod login;
pub mod metrics;
pub mod payload;
pub mod pools;
pub mod profiling;
pub mod rate_limit;
pub mod relay_identity;
pub mod server;
pub mod session;
pub mod state;
pub mod storage;
pub mod tls;
pub mod writer;
pub mod ws;

pub use config::{Environment, RelayConfig};
pub use error::RelayError;
pub use server::{RunningRelay, start};
