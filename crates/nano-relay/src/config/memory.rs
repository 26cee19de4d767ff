//! `[memory]`.

use serde::{Deserialize, Serialize};

use crate::error::StartupError;

use super::range;

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Keep pre-generated key pairs and reusable frame buffers in bounded pools.
    pub enable_memory_pools: bool,
    /// Pre-generated ephemeral KEM key pairs kept ready (shared among the modes).
    pub key_pool_size: usize,
    /// Frame encoding buffers kept for reuse.
    pub message_pool_size: usize,
    /// Keep long-lived secret keys in mlock'ed memory.
    pub use_secure_allocator: bool,
    /// Cap on locked memory, in MiB.
    pub max_locked_memory_mb: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enable_memory_pools: false,
            key_pool_size: 1_000,
            message_pool_size: 5_000,
            use_secure_allocator: false,
            max_locked_memory_mb: 64,
        }
    }
}

impl MemoryConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let m = self;
        range("memory.key_pool_size", m.key_pool_size, 0, 10_000_000)?;
        range(
            "memory.message_pool_size",
            m.message_pool_size,
            0,
            10_000_000,
        )?;
        range(
            "memory.max_locked_memory_mb",
            m.max_locked_memory_mb,
            1,
            65_536,
        )?;
        Ok(())
    }
}
