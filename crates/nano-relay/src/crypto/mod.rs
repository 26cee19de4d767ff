//! The relay's own cryptographic work, off the I/O threads.
//!
//! ```text
//! pool            the bounded crypto thread pool every signature and KEM operation runs on
//! auth_verifier   concurrent `auth` signatures checked together (BatchVerifier)
//! identity        the relay's long-term keys in the data directory
//! kex             the relay's signed ephemeral KEM keys (KeyCache) and their completion
//! ```

pub(crate) mod auth_verifier;
pub(crate) mod identity;
pub(crate) mod kex;
pub(crate) mod pool;
