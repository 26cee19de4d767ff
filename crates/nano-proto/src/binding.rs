//! Channel binding: what ties an authentication to one connection (PROTOCOL.md §12).
//!
//! Over TLS both ends compute the RFC 9266 `tls-exporter` value: the TLS 1.3 exporter
//! (RFC 8446 §7.5) with label [`TLS_EXPORTER_LABEL`], an empty context and
//! [`TLS_EXPORTER_LEN`] bytes of output. The relay's `challenge` signature and the client's
//! `auth` signature both cover it, so neither can be relayed to a different TLS connection: a
//! party in the middle holds two connections with two different exporters. A plain connection
//! (allowed on loopback only) has no binding, and says so.

use serde::{Deserialize, Serialize};

/// RFC 9266 §2 exporter label.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// RFC 9266 §2 exporter output length, in bytes.
pub const TLS_EXPORTER_LEN: usize = 32;

/// Which channel binding a connection has, as named on the wire (`challenge.channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindingKind {
    /// A plain (loopback) connection: nothing to bind to.
    #[serde(rename = "none")]
    None,
    /// RFC 9266 `tls-exporter`.
    #[serde(rename = "tls-exporter")]
    TlsExporter,
}

impl BindingKind {
    /// The byte that names the kind in signed content: `0x00` none, `0x01` tls-exporter.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TlsExporter => 1,
        }
    }

    /// The kind a byte names.
    ///
    /// # Errors
    /// [`crate::ProtoError::InvalidField`] for any other byte.
    pub fn from_byte(b: u8) -> Result<Self, crate::ProtoError> {
        match b {
            0 => Ok(Self::None),
            1 => Ok(Self::TlsExporter),
            _ => Err(crate::ProtoError::field(
                "channel_binding",
                "unknown binding kind",
            )),
        }
    }

    /// The wire name (`none`, `tls-exporter`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::TlsExporter => "tls-exporter",
        }
    }
}

/// One connection's channel binding value. Not secret (each end computes it; an eavesdropper
/// on TLS cannot), but it never travels: each end uses its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// A plain connection.
    None,
    /// The connection's RFC 9266 `tls-exporter` value.
    TlsExporter([u8; TLS_EXPORTER_LEN]),
}

impl ChannelBinding {
    /// Its kind.
    pub const fn kind(&self) -> BindingKind {
        match self {
            Self::None => BindingKind::None,
            Self::TlsExporter(_) => BindingKind::TlsExporter,
        }
    }

    /// What signed content carries: kind (1) ‖ value (32; zeros for none), 33 bytes.
    pub fn encode(&self) -> [u8; 1 + TLS_EXPORTER_LEN] {
        let mut out = [0u8; 1 + TLS_EXPORTER_LEN];
        out[0] = self.kind().to_byte();
        if let Self::TlsExporter(v) = self {
            out[1..].copy_from_slice(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(ChannelBinding::None.encode(), [0u8; 33]);
        let e = ChannelBinding::TlsExporter([7; 32]).encode();
        assert_eq!(e[0], 1);
        assert_eq!(&e[1..], &[7; 32]);
        for k in [BindingKind::None, BindingKind::TlsExporter] {
            assert_eq!(BindingKind::from_byte(k.to_byte()), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).ok(),
                Some(format!("\"{}\"", k.as_str()))
            );
        }
        assert!(BindingKind::from_byte(2).is_err());
    }
}
