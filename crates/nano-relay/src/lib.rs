//! The Nano-Messenger relay.
//!
//! ```text
//! config   relay.toml: the guide's [server] [performance] [memory] [caching] [debug] sections
//!          plus [storage] [security] [tls] [limits]; parsing, validation, environment
//!          overrides, and the development / production templates
//! ```
#![forbid(unsafe_code)]

pub mod config;

pub use config::{ConfigError, Environment, RelayConfig};
