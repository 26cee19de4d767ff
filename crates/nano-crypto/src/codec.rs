//! A bounds-checked reader for the crate's binary encodings.
//!
//! Every decoder of untrusted bytes goes through [`Reader`], so truncation and trailing bytes are
//! reported the same way everywhere and no decoder indexes a slice directly.

use crate::error::{CryptoError, Result};

/// Reads fields front to back from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CryptoError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// How many bytes are left.
    pub(crate) fn rest_len(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self, what: &'static str) -> Result<()> {
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
