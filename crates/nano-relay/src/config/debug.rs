//! `[debug]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::StartupError;

use super::range;

/// `[debug]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// Write CPU profiles (builds with `--features profiling`).
    pub enable_profiling: bool,
    /// Seconds covered by each profile.
    pub profile_duration_seconds: u64,
    /// Where profiles are written.
    pub profile_dir: PathBuf,
    /// Log each crypto operation's kind, mode and duration (never keys or content).
    pub log_crypto_operations: bool,
    /// Per-mode and per-code histograms in `/metrics`.
    pub detailed_metrics: bool,
}

impl Default for DebugConfig {
    fn default() -> Self {
        Self {
            enable_profiling: false,
            profile_duration_seconds: 60,
            profile_dir: PathBuf::from("./data/profiles"),
            log_crypto_operations: false,
            detailed_metrics: false,
        }
    }
}

impl DebugConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let d = self;
        range(
            "debug.profile_duration_seconds",
            d.profile_duration_seconds,
            1,
            86_400,
        )?;
        Ok(())
    }
}
