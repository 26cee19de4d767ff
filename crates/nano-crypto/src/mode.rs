//! The three crypto modes and their total order (used for policy floors).

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CryptoError;

/// A cryptographic suite. The order is the strength order: classical < hybrid < quantum, so a
/// policy floor is a plain `>=` comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum CryptoMode {
    /// X25519 + Ed25519. Fastest; no post-quantum protection.
    Classical = 1,
    /// X-Wing (ML-KEM-768 + X25519) + composite ML-DSA-65/Ed25519. Secure if either family holds.
    Hybrid = 2,
    /// ML-KEM-1024 + ML-DSA-87 (CNSA 2.0 level).
    Quantum = 3,
}

impl CryptoMode {
    /// `Ok` when this mode is at or above `floor` (a relay's minimum, a bundle's `min_mode`):
    /// the one floor check every crate uses.
    ///
    /// # Errors
    /// [`CryptoError::ModeNotAllowed`] below it.
    pub fn at_least(self, floor: CryptoMode) -> Result<(), CryptoError> {
        if self < floor {
            return Err(CryptoError::ModeNotAllowed { mode: self, floor });
        }
        Ok(())
    }

    /// Every mode, weakest first.
    pub const ALL: [CryptoMode; 3] = [Self::Classical, Self::Hybrid, Self::Quantum];

    /// The lowercase name used in config files, JSON and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
            Self::Quantum => "quantum",
        }
    }

    /// The byte that tags encodings of this mode.
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Decodes a mode byte.
    pub fn from_byte(b: u8) -> Result<Self, CryptoError> {
        match b {
            1 => Ok(Self::Classical),
            2 => Ok(Self::Hybrid),
            3 => Ok(Self::Quantum),
            other => Err(CryptoError::UnknownMode(other)),
        }
    }

    /// This mode and every stronger one, weakest first: the modes an identity with this minimum
    /// holds keys for.
    pub fn and_stronger(self) -> impl Iterator<Item = CryptoMode> {
        Self::ALL.into_iter().filter(move |m| *m >= self)
    }
}

impl Default for CryptoMode {
    /// Hybrid is the default: secure if either the classical or the post-quantum family holds.
    fn default() -> Self {
        Self::Hybrid
    }
}

impl fmt::Display for CryptoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CryptoMode {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classical" => Ok(Self::Classical),
            "hybrid" => Ok(Self::Hybrid),
            "quantum" => Ok(Self::Quantum),
            other => Err(CryptoError::UnknownModeName(
                other.chars().take(32).collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_strength_order() {
        assert!(CryptoMode::Classical < CryptoMode::Hybrid);
        assert!(CryptoMode::Hybrid < CryptoMode::Quantum);
        assert_eq!(CryptoMode::ALL.iter().max(), Some(&CryptoMode::Quantum));
    }

    #[test]
    fn text_forms_round_trip() {
        for m in CryptoMode::ALL {
            assert_eq!(m.to_string().parse::<CryptoMode>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap_or_default();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<CryptoMode>(&json).ok(), Some(m));
            assert_eq!(CryptoMode::from_byte(m.to_byte()), Ok(m));
        }
    }

    #[test]
    fn bad_names_and_bytes_are_errors() {
        assert!(matches!(
            "Hybrid".parse::<CryptoMode>(),
            Err(CryptoError::UnknownModeName(_))
        ));
        assert!("".parse::<CryptoMode>().is_err());
        assert!(serde_json::from_str::<CryptoMode>("\"post-quantum\"").is_err());
        for b in [0u8, 4, 0xff] {
            assert_eq!(CryptoMode::from_byte(b), Err(CryptoError::UnknownMode(b)));
        }
    }

    #[test]
    fn and_stronger_lists_floor_and_above() {
        let v: Vec<_> = CryptoMode::Hybrid.and_stronger().collect();
        assert_eq!(v, vec![CryptoMode::Hybrid, CryptoMode::Quantum]);
        assert_eq!(CryptoMode::Classical.and_stronger().count(), 3);
        assert_eq!(CryptoMode::Quantum.and_stronger().count(), 1);
    }
}
