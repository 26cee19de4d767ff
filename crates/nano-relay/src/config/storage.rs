//! `[storage]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::StartupError;

use super::{MAX_RETENTION_DAYS, SecretUrl, invalid, range};

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://…`; `NANO_STORAGE_URL` overrides it.
    pub url: SecretUrl,
    /// Directory for the relay identity key, the SQLite file and generated certificates.
    pub data_dir: PathBuf,
    /// Database connections in the pool.
    pub pool_size: u32,
    /// Seconds between cleanup passes over acked and expired messages.
    pub cleanup_interval_seconds: u64,
    /// Days an undelivered message is kept.
    pub message_retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("sqlite://./data/relay.db"),
            data_dir: PathBuf::from("./data"),
            pool_size: 8,
            cleanup_interval_seconds: 60,
            message_retention_days: 30,
        }
    }
}

impl StorageConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let st = self;
        let url = st.url.expose();
        if !(url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "storage.url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if url == "sqlite://" {
            return Err(invalid("storage.url", "sqlite:// needs a file path"));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path == ":memory:" || path.starts_with("file:") || path.contains("mode=memory") {
                return Err(invalid(
                    "storage.url",
                    "an in-memory SQLite database is not durable: give a file path",
                ));
            }
        } else if let Err(e) = url.parse::<postgres::Config>() {
            return Err(invalid("storage.url", format!("not a PostgreSQL URL: {e}")));
        }
        range("storage.pool_size", st.pool_size, 1, 1024)?;
        range(
            "storage.cleanup_interval_seconds",
            st.cleanup_interval_seconds,
            1,
            86_400,
        )?;
        // Clients refuse envelopes older than the replay window, so keeping one longer only
        // delivers what cannot be opened.
        range(
            "storage.message_retention_days",
            st.message_retention_days,
            1,
            MAX_RETENTION_DAYS,
        )?;
        Ok(())
    }
}
