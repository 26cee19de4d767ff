//! The network edge: listeners, TLS, per-connection I/O, the HTTP API, rate limits.
//!
//! ```text
//! ws_listener    accept → TLS (channel binding) → WebSocket upgrade → one connection task
//! connection     the connection loop: frames in (size- and rate-checked) → protocol::Session,
//!                its answers (protocol::replies) and hub events out, idle pings, close reasons
//! http_listener  API connections: cap, header/request timeouts, TLS, bounded drain
//! http           health, ready, metrics, /v1/relay, users, keys, openapi.json
//! tls            rustls server config (TLS 1.3); self-signed certificate for development
//! rate_limit     token buckets per connection and per address
//! ```

pub(crate) mod connection;
pub(crate) mod http;
pub(crate) mod http_listener;
pub(crate) mod rate_limit;
pub(crate) mod tls;
pub(crate) mod ws_listener;
