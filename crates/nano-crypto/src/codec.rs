//! A bounds-checked reader for the binary encodings (this crate's, and `nano-proto`'s binary
//! frames).
//!
//! Every decoder of untrusted bytes goes through [`Reader`], so truncation and trailing bytes are
//! reported the same way everywhere and no decoder indexes a slice directly.

use crate::error::{CryptoError, Result};

/// Reads fields front to back from a byte slice. Errors name the field (`what`):
/// [`CryptoError::Truncated`], [`CryptoError::TrailingBytes`].
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CryptoError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// The next byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// The next big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// The next big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// The next big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// How many bytes are left.
    pub fn rest_len(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self, what: &'static str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }
}

/// Checks that `bytes` has exactly `expected` bytes.
pub(crate) fn exact_len(bytes: &[u8], expected: usize, what: &'static str) -> Result<()> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(CryptoError::InvalidLength {
            what,
            expected,
            got: bytes.len(),
        })
    }
}

/// Borrows exactly `N` bytes as an array.
pub(crate) fn arr<const N: usize>(b: &[u8]) -> Result<&[u8; N]> {
    b.try_into().map_err(|_| CryptoError::InvalidLength {
        what: "key material",
        expected: N,
        got: b.len(),
    })
}
