//! Small secret values: zeroized on drop, `***` in `Debug`, compared in constant time.
//!
//! Long-lived, large secrets (identity keys) live in [`crate::secure_mem::SecureBox`] instead;
//! these fixed-size types are for shared secrets and derived symmetric keys, which are short-lived.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret byte string.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

/// A 32-byte KEM shared secret.
pub type SharedSecret = SecretBytes<32>;

/// A 32-byte symmetric key.
pub type SymmetricKey = SecretBytes<32>;

impl<const N: usize> SecretBytes<N> {
    /// Takes ownership of `bytes`; the caller's copy should be zeroized by the caller.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Copies from a slice of exactly `N` bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; N] = bytes.try_into().ok()?;
        Some(Self(arr))
    }

    /// Borrows the secret bytes. Callers must not copy them into unzeroized storage.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<const N: usize> ConstantTimeEq for SecretBytes<N> {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_contents() {
        let s = SharedSecret::new([0xab; 32]);
        assert_eq!(format!("{s:?}"), "***");
        assert!(!format!("{s:?}").contains("ab"));
    }

    #[test]
    fn equality_is_by_value() {
        let a = SharedSecret::new([1; 32]);
        let mut other = [1; 32];
        assert_eq!(a, SharedSecret::new(other));
        other[31] = 2;
        assert_ne!(a, SharedSecret::new(other));
    }

    #[test]
    fn zeroize_clears() {
        let mut s = SharedSecret::new([7; 32]);
        s.zeroize();
        assert_eq!(s.expose(), &[0u8; 32]);
        assert!(SharedSecret::from_slice(&[0; 31]).is_none());
    }
}
