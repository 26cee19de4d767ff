//! The Nano-Messenger relay.
//!
//! ```text
//! error      RelayError, the crate's one error type, and its wire codes
//! config   relay.toml: the guide's [server] [performance] [memory] [caching] [debug] sections
//!          plus [storage] [security] [tls] [limits]; parsing, validation, environment
//!          overrides, and the development / production templates
//! l2_cache   Redis L2 of user bundles and the cross-relay invalidation channel
//! l1_cache   bounded LRU + TTL cache of user bundles (the L1 of L1 → L2 → database)
//! storage    one synchronous Storage trait (users, messages, migrations) and two backends:
//!            SQLite (WAL, embedded) and PostgreSQL (shared); the guide's four indexes
//! rate_limit token buckets per connection and per address (bounded LRU of addresses)
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod l1_cache;
pub mod l2_cache;
pub mod rate_limit;
pub mod storage;

pub use config::{Environment, RelayConfig};
pub use error::RelayError;
