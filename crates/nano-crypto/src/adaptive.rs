//! Adaptive mode selection: security rules first, then network, then device, default hybrid —
//! and the result is never below a policy floor.
//!
//! Rules in order (first match wins):
//!
//! | # | condition | mode |
//! |---|---|---|
//! | 1 | `data_class == TopSecret` | quantum |
//! | 2 | effective threat `== Critical` | quantum |
//! | 3 | effective threat `>= High` | hybrid |
//! | 4 | `data_class >= data_sensitivity` (default `Classified`) | hybrid |
//! | 5 | `bandwidth_kbps < low_bandwidth_threshold` | classical |
//! | 6 | `latency_ms > high_latency_threshold` | classical |
//! | 7 | `cpu_usage_percent > cpu_usage_threshold` | classical |
//! | 8 | `battery_level_percent < battery_level_threshold` | classical |
//! | 9 | otherwise | hybrid |
//!
//! The effective threat is the higher of the deployment's configured `threat_level` and the
//! message's. A NaN measurement satisfies no threshold (it never lowers the mode). Afterwards
//! [`AdaptiveCryptoConfig::select_mode_within`] raises the mode to the floor (relay, sender,
//! recipient minimums) and to the weakest mode both sides hold keys for; an automatic choice
//! ([`AdaptiveCryptoConfig::select_automatic`]) is never below [`AUTOMATIC_FLOOR`] (hybrid),
//! since the measurements behind rules 5–8 can be pushed from the network.

use serde::{Deserialize, Serialize};

use crate::error::{CryptoError, Result};
use crate::mode::CryptoMode;

/// The weakest mode an automatic choice ([`AdaptiveCryptoConfig::select_automatic`]) makes,
/// whatever the measurements say: rules 5–8 only lower a choice above it.
pub const AUTOMATIC_FLOOR: CryptoMode = CryptoMode::Hybrid;

/// How hostile the environment is believed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatLevel {
    /// No specific threat.
    Low,
    /// Ordinary internet exposure.
    Medium,
    /// A capable adversary is assumed: hybrid at least.
    High,
    /// A state-level adversary recording traffic: quantum.
    Critical,
}

/// How sensitive the message content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Public information.
    Public,
    /// Internal, low impact.
    Internal,
    /// Confidential business or personal data.
    Confidential,
    /// Classified: hybrid at least by default.
    Classified,
    /// Top secret: always quantum.
    TopSecret,
}

/// Conditions under which one message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MessageContext {
    /// Measured or estimated bandwidth, kbit/s.
    pub bandwidth_kbps: u32,
    /// Round-trip latency, milliseconds.
    pub latency_ms: u32,
    /// The message's threat level.
    pub threat_level: ThreatLevel,
    /// The message's data class.
    pub data_class: DataClass,
    /// CPU load, 0–100.
    pub cpu_usage_percent: f32,
    /// Battery charge, 0–100 (100 when on mains power).
    pub battery_level_percent: f32,
}

impl Default for MessageContext {
    /// A well-connected, idle, mains-powered device sending internal data.
    fn default() -> Self {
        Self {
            bandwidth_kbps: 100_000,
            latency_ms: 20,
            threat_level: ThreatLevel::Medium,
            data_class: DataClass::Internal,
            cpu_usage_percent: 10.0,
            battery_level_percent: 100.0,
        }
    }
}

/// Thresholds and policy for [`AdaptiveCryptoConfig::select_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveCryptoConfig {
    /// Below this bandwidth (kbit/s) prefer classical. Default 1000 (1 Mbit/s).
    pub low_bandwidth_threshold: u32,
    /// Above this latency (ms) prefer classical. Default 200.
    pub high_latency_threshold: u32,
    /// The deployment's baseline threat level; a message's own level can only raise it.
    pub threat_level: ThreatLevel,
    /// Data at or above this class requires hybrid or stronger. Default `Classified`.
    pub data_sensitivity: DataClass,
    /// Above this CPU load (percent) prefer classical. Default 80.
    pub cpu_usage_threshold: f32,
    /// Below this battery level (percent) prefer classical. Default 20.
    pub battery_level_threshold: f32,
}

impl Default for AdaptiveCryptoConfig {
    fn default() -> Self {
        Self {
            low_bandwidth_threshold: 1_000,
            high_latency_threshold: 200,
            threat_level: ThreatLevel::Low,
            data_sensitivity: DataClass::Classified,
            cpu_usage_threshold: 80.0,
            battery_level_threshold: 20.0,
        }
    }
}

impl AdaptiveCryptoConfig {
    /// The mode the rules pick for `ctx`, before any floor.
    pub fn select_mode(&self, ctx: &MessageContext) -> CryptoMode {
        let threat = self.threat_level.max(ctx.threat_level);
        if ctx.data_class == DataClass::TopSecret || threat == ThreatLevel::Critical {
            return CryptoMode::Quantum;
        }
        if threat >= ThreatLevel::High || ctx.data_class >= self.data_sensitivity {
            return CryptoMode::Hybrid;
        }
        if ctx.bandwidth_kbps < self.low_bandwidth_threshold
            || ctx.latency_ms > self.high_latency_threshold
            || ctx.cpu_usage_percent > self.cpu_usage_threshold
            || ctx.battery_level_percent < self.battery_level_threshold
        {
            return CryptoMode::Classical;
        }
        CryptoMode::Hybrid
    }

    /// The rules' pick raised to `floor`.
    pub fn select_mode_with_floor(&self, ctx: &MessageContext, floor: CryptoMode) -> CryptoMode {
        self.select_mode(ctx).max(floor)
    }

    /// The mode for a message whose mode nobody chose explicitly (`Auto`): as
    /// [`AdaptiveCryptoConfig::select_mode_within`] with the floor raised to
    /// [`AUTOMATIC_FLOOR`]. Bandwidth, latency and even CPU load can be pushed by whoever sits
    /// on the network (delaying packets, flooding the device), so no measurement may lower an
    /// automatic choice to classical; only the user's explicit choice can.
    pub fn select_automatic(
        &self,
        ctx: &MessageContext,
        floor: CryptoMode,
        available: &[CryptoMode],
    ) -> Result<CryptoMode> {
        self.select_mode_within(ctx, floor.max(AUTOMATIC_FLOOR), available)
    }

    /// The weakest mode in `available` (modes both sides hold keys for) at or above both the
    /// rules' pick and `floor`. Errors when no such mode exists; never goes below.
    pub fn select_mode_within(
        &self,
        ctx: &MessageContext,
        floor: CryptoMode,
        available: &[CryptoMode],
    ) -> Result<CryptoMode> {
        let want = self.select_mode_with_floor(ctx, floor);
        available
            .iter()
            .copied()
            .filter(|m| *m >= want)
            .min()
            .ok_or(CryptoError::NoCommonMode)
    }
}
