//! `[tls]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::StartupError;

use super::invalid;

/// `[tls]`. Off by default: plain `ws://` on loopback.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve `wss://` on the WebSocket port.
    pub enabled: bool,
    /// Generate a self-signed certificate for `localhost` (development).
    pub self_signed: bool,
    /// PEM certificate chain (production).
    pub cert_path: Option<PathBuf>,
    /// PEM private key (production); `NANO_TLS_KEY_PATH` overrides it.
    pub key_path: Option<PathBuf>,
}

impl TlsConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let t = self;
        let files = t.cert_path.is_some() || t.key_path.is_some();
        if !t.enabled && (t.self_signed || files) {
            return Err(invalid(
                "tls.enabled",
                "self_signed, cert_path and key_path need enabled = true",
            ));
        }
        if t.self_signed && files {
            return Err(invalid(
                "tls.self_signed",
                "choose either self_signed = true or cert_path and key_path",
            ));
        }
        if t.enabled && !t.self_signed && (t.cert_path.is_none() || t.key_path.is_none()) {
            return Err(invalid(
                "tls.cert_path",
                "cert_path and key_path are required unless self_signed = true",
            ));
        }
        Ok(())
    }
}
