//! `[performance]`.

use serde::{Deserialize, Serialize};

use crate::error::StartupError;

use super::range;

/// `[performance]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// Serve `key_exchange` keys from the key cache.
    pub enable_key_caching: bool,
    /// Derived keys the cache holds at most.
    pub key_cache_size: usize,
    /// Seconds a cached ephemeral key is served.
    pub key_cache_ttl_seconds: u64,
    /// Most messages committed in one transaction.
    pub message_batch_size: usize,
    /// Longest a message waits for its batch, in milliseconds.
    pub message_batch_timeout_ms: u64,
    /// Disable Nagle's algorithm on accepted sockets.
    pub tcp_nodelay: bool,
    /// Enable TCP keep-alive on accepted sockets.
    pub tcp_keepalive: bool,
    /// Socket send and receive buffer size, in bytes.
    pub socket_buffer_size: usize,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            enable_key_caching: true,
            key_cache_size: 100,
            key_cache_ttl_seconds: 60,
            message_batch_size: 10,
            message_batch_timeout_ms: 100,
            tcp_nodelay: true,
            tcp_keepalive: true,
            socket_buffer_size: 65_536,
        }
    }
}

impl PerformanceConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let p = self;
        range(
            "performance.key_cache_size",
            p.key_cache_size,
            1,
            10_000_000,
        )?;
        range(
            "performance.key_cache_ttl_seconds",
            p.key_cache_ttl_seconds,
            1,
            86_400,
        )?;
        range(
            "performance.message_batch_size",
            p.message_batch_size,
            1,
            10_000,
        )?;
        range(
            "performance.message_batch_timeout_ms",
            p.message_batch_timeout_ms,
            1,
            60_000,
        )?;
        range(
            "performance.socket_buffer_size",
            p.socket_buffer_size,
            4096,
            64 * 1024 * 1024,
        )?;
        Ok(())
    }
}
