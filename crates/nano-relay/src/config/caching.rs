//! `[caching]`.

use serde::{Deserialize, Serialize};

use crate::error::StartupError;

use super::{SecretUrl, invalid, range};

/// `[caching]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachingConfig {
    /// In-process cache of user bundles.
    pub enable_l1_cache: bool,
    /// Entries in the L1 cache.
    pub l1_cache_size: usize,
    /// Seconds an L1 entry is served.
    pub l1_cache_ttl_seconds: u64,
    /// Redis as a second cache level.
    pub enable_l2_cache: bool,
    /// Redis URL (`redis://…`); `NANO_L2_CACHE_URL` overrides it.
    pub l2_cache_url: Option<SecretUrl>,
    /// Seconds an L2 entry lives.
    pub l2_cache_ttl_seconds: u64,
    /// Prefix of every Redis key and channel: relays of one deployment share it.
    pub l2_key_prefix: String,
}

impl Default for CachingConfig {
    fn default() -> Self {
        Self {
            enable_l1_cache: true,
            l1_cache_size: 1_000,
            l1_cache_ttl_seconds: 300,
            enable_l2_cache: false,
            l2_cache_url: None,
            l2_cache_ttl_seconds: 3_600,
            l2_key_prefix: "nano:".into(),
        }
    }
}

impl CachingConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let c = self;
        range("caching.l1_cache_size", c.l1_cache_size, 1, 10_000_000)?;
        // Other relays' L1 caches learn of a key rotation only through pub/sub; a short TTL
        // bounds how long a rotated-away key could be served if a notice is lost.
        range(
            "caching.l1_cache_ttl_seconds",
            c.l1_cache_ttl_seconds,
            1,
            600,
        )?;
        range(
            "caching.l2_cache_ttl_seconds",
            c.l2_cache_ttl_seconds,
            1,
            30 * 86_400,
        )?;
        if c.enable_l2_cache {
            match c.l2_cache_url.as_ref().map(SecretUrl::expose) {
                Some(u) if u.starts_with("rediss://") => {
                    return Err(invalid(
                        "caching.l2_cache_url",
                        "rediss:// (TLS) is not built in: use redis:// on a private network",
                    ));
                }
                Some(u) if u.starts_with("redis://") => {
                    if let Err(e) = redis::IntoConnectionInfo::into_connection_info(u) {
                        return Err(invalid(
                            "caching.l2_cache_url",
                            format!("not a Redis URL: {e}"),
                        ));
                    }
                }
                Some(_) => return Err(invalid("caching.l2_cache_url", "must be a redis:// URL")),
                None => {
                    return Err(invalid(
                        "caching.l2_cache_url",
                        "required when enable_l2_cache = true (or set NANO_L2_CACHE_URL)",
                    ));
                }
            }
        }
        if c.l2_key_prefix.is_empty()
            || c.l2_key_prefix.len() > 64
            || !c.l2_key_prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "caching.l2_key_prefix",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        Ok(())
    }
}
