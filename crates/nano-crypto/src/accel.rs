//! CPU feature detection that picks the default AEAD.
//!
//! Why: AES-256-GCM is several times faster than ChaCha20-Poly1305 with AES-NI and slower (and
//! harder to make constant-time) without it, so the sender's choice follows the hardware. The
//! other flags are reported (startup log, `GET /v1/relay`) for operators; the primitive
//! libraries dispatch on them by themselves.

use serde::{Deserialize, Serialize};

use crate::aead::AeadId;

/// Hardware features relevant to the primitives in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CryptoAcceleration {
    /// AES-NI and carry-less multiply: AES-256-GCM runs in hardware.
    pub has_aes_ni: bool,
    /// AVX2: the ML-KEM / ML-DSA / ChaCha20 vector paths.
    pub has_avx2: bool,
    /// SHA extensions.
    pub has_sha_extensions: bool,
    /// The RDRAND instruction.
    pub has_rdrand: bool,
}

/// Which ChaCha20 code path the hardware allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChaCha20Config {
    /// 256-bit vector implementation.
    Avx2,
    /// Portable implementation.
    Portable,
}

impl CryptoAcceleration {
    /// Reads the running CPU's features. Off x86-64 every flag is false (the portable answer).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                has_aes_ni: std::arch::is_x86_feature_detected!("aes")
                    && std::arch::is_x86_feature_detected!("pclmulqdq"),
                has_avx2: std::arch::is_x86_feature_detected!("avx2"),
                has_sha_extensions: std::arch::is_x86_feature_detected!("sha"),
                has_rdrand: std::arch::is_x86_feature_detected!("rdrand"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::default()
        }
    }

    /// AES-256-GCM where AES-NI makes it the fastest AEAD; ChaCha20-Poly1305 otherwise, since
    /// software AES is slower and harder to keep constant-time.
    pub fn preferred_aead(&self) -> AeadId {
        if self.has_aes_ni {
            AeadId::Aes256Gcm
        } else {
            AeadId::ChaCha20Poly1305
        }
    }

    /// The ChaCha20 path the hardware allows.
    pub fn optimize_chacha20(&self) -> ChaCha20Config {
        if self.has_avx2 {
            ChaCha20Config::Avx2
        } else {
            ChaCha20Config::Portable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_choice_follows_aes_ni() {
        let mut a = CryptoAcceleration::default();
        assert_eq!(a.preferred_aead(), AeadId::ChaCha20Poly1305);
        assert_eq!(a.optimize_chacha20(), ChaCha20Config::Portable);
        a.has_aes_ni = true;
        a.has_avx2 = true;
        assert_eq!(a.preferred_aead(), AeadId::Aes256Gcm);
        assert_eq!(a.optimize_chacha20(), ChaCha20Config::Avx2);
    }

    /// `detect` agrees with the kernel's own account of the CPU (`/proc/cpuinfo` flags), an
    /// independent source.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn detect_matches_the_kernels_cpu_flags() {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            eprintln!("skipping: /proc/cpuinfo is not readable");
            return;
        };
        let flags: Vec<&str> = info
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split(':').nth(1))
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default();
        let has = |f: &str| flags.contains(&f);
        assert!(!flags.is_empty(), "no flags line in /proc/cpuinfo");
        assert_eq!(
            CryptoAcceleration::detect(),
            CryptoAcceleration {
                has_aes_ni: has("aes") && has("pclmulqdq"),
                has_avx2: has("avx2"),
                has_sha_extensions: has("sha_ni"),
                has_rdrand: has("rdrand"),
            }
        );
    }
}
