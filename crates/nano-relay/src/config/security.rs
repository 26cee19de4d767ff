//! `[security]`.

use nano_crypto::CryptoMode;
use serde::{Deserialize, Serialize};

use crate::error::StartupError;

use super::range;

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The weakest mode the relay accepts for keys, auth and messages.
    pub minimum_crypto_mode: CryptoMode,
    /// Accept `send_message` before authentication. Such a message has no sender, so its
    /// recipient cannot verify it: test traffic (the performance guide's load test sends
    /// before `auth`), on in the development template only.
    pub allow_anonymous_send: bool,
    /// Accept `send_message` payloads that are not sealed envelopes (the guide's load test
    /// sends plain text); recipients are told such a payload is not an envelope. Off except in
    /// the development template: a production relay stores envelopes only.
    pub allow_opaque_payloads: bool,
    /// Frames per second one connection may send (sustained).
    pub rate_limit_per_connection: u32,
    /// Frames per second all connections from one address may send (sustained).
    pub rate_limit_per_address: u32,
    /// Frames a connection may send in a burst above its rate.
    pub rate_limit_burst: u32,
    /// One-time prekeys one authenticated user may claim per second (sustained), across its
    /// connections; past it `get_prekeys` answers with the last-resort bundle, so nobody can
    /// drain someone's one-time prekeys.
    pub prekey_claims_per_second: u32,
    /// One-time prekey claims a user may make in a burst above that rate.
    pub prekey_claim_burst: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            minimum_crypto_mode: CryptoMode::Classical,
            allow_anonymous_send: false,
            allow_opaque_payloads: false,
            rate_limit_per_connection: 1_000,
            rate_limit_per_address: 5_000,
            rate_limit_burst: 200,
            prekey_claims_per_second: 1,
            prekey_claim_burst: 100,
        }
    }
}

impl SecurityConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let sec = self;
        range(
            "security.rate_limit_per_connection",
            sec.rate_limit_per_connection,
            1,
            10_000_000,
        )?;
        range(
            "security.rate_limit_per_address",
            sec.rate_limit_per_address,
            1,
            10_000_000,
        )?;
        range(
            "security.rate_limit_burst",
            sec.rate_limit_burst,
            1,
            10_000_000,
        )?;
        range(
            "security.prekey_claims_per_second",
            sec.prekey_claims_per_second,
            1,
            10_000_000,
        )?;
        range(
            "security.prekey_claim_burst",
            sec.prekey_claim_burst,
            1,
            10_000_000,
        )?;
        Ok(())
    }
}
