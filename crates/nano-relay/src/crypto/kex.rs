//! The `key_exchange` service: the relay's ephemeral KEM key for a mode, signed by its long-term
//! identity, and completion of an exchange from the client's encapsulation (the frames are
//! handled in `protocol::key_exchange`).
//!
//! This is the performance guide's key-exchange frame, kept as a probe (PROTOCOL.md §12): a
//! completed exchange proves that the relay holds the secret of a key its identity signed, and
//! nothing more. The derived key authenticates the confirmation and is dropped; it protects no
//! traffic and no session state keeps it. Logins are bound to the connection by TLS channel
//! binding instead ([`crate::protocol::login`]).
//!
//! With `enable_key_caching`, one key per mode is served from the [`KeyCache`] for
//! `key_cache_ttl_seconds`, and its signed offer is reused, so a burst of exchanges costs one key
//! generation and one signature. Without it, every request gets a fresh key. All of this is CPU
//! work and runs on the crypto pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nano_crypto::channel::{channel_key, confirmation};
use nano_crypto::{CryptoMode, Identity, KemCiphertext, KemKeyPair, KeyCache, OsRng, SigContext};
use nano_proto::frames::MAX_SAFE_INTEGER;
use nano_proto::signed::key_exchange_content;
use nano_proto::{Bytes, RelayFrame};

use crate::error::RelayError;
use crate::pools::KeyPool;

use crate::telemetry::metrics::Metrics;

/// One signed ephemeral key, as offered to clients.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The key's id.
    pub key_id: u64,
    /// The key pair (the session keeps it to complete the exchange).
    pub keypair: Arc<KemKeyPair>,
    /// When the key stops being valid, ms since the Unix epoch (as signed).
    pub expires_at_ms: u64,
    /// The signed `key_exchange` frame.
    pub frame: RelayFrame,
}

/// Ephemeral key service.
pub struct KexService {
    identity: Arc<Identity>,
    pool: Option<Arc<KeyPool>>,
    cache: Option<Mutex<KeyCache>>,
    offers: Mutex<HashMap<CryptoMode, Offer>>,
    ttl: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for KexService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KexService")
            .field("caching", &self.cache.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A key's id: the first bytes of SHA-256 of its public key, within JavaScript's exact range.
fn key_id(public_key: &[u8]) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(public_key);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) & MAX_SAFE_INTEGER
}

impl KexService {
    /// A service signing with `identity`; `cache` is `Some((entries, ttl))` with key caching;
    /// new keys come from `pool` when it has one ready.
    pub fn new(
        identity: Arc<Identity>,
        cache: Option<(usize, Duration)>,
        ttl: Duration,
        pool: Option<Arc<KeyPool>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            identity,
            pool,
            cache: cache.map(|(n, ttl)| Mutex::new(KeyCache::new(n, ttl))),
            offers: Mutex::new(HashMap::new()),
            ttl,
            metrics,
        }
    }

    /// A new key pair: pre-generated when the pool has one, else generated now.
    fn new_keypair(&self, mode: CryptoMode) -> Result<KemKeyPair, nano_crypto::CryptoError> {
        if let Some(kp) = self.pool.as_ref().and_then(|p| p.take(mode)) {
            return Ok(kp);
        }
        let started = std::time::Instant::now();
        let kp = KemKeyPair::generate(mode, &mut OsRng)?;
        self.metrics
            .crypto_op("kem_keygen", mode, started.elapsed());
        Ok(kp)
    }

    /// The current offer for `mode` (blocking: may generate and sign).
    pub fn offer(&self, mode: CryptoMode) -> Result<Offer, RelayError> {
        let Some(cache) = &self.cache else {
            let kp = Arc::new(self.new_keypair(mode)?);
            self.metrics.key_cache_misses.inc();
            return self.sign_offer(mode, kp, self.ttl);
        };
        let (kp, left) = {
            let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
            let before = c.stats().misses;
            let r = c.get_or_insert_keypair(mode, |_| self.new_keypair(mode), &mut OsRng)?;
            if c.stats().misses > before {
                self.metrics.key_cache_misses.inc();
            } else {
                self.metrics.key_cache_hits.inc();
            }
            r
        };
        let mut offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = offers.get(&mode)
            && Arc::ptr_eq(&o.keypair, &kp)
        {
            return Ok(o.clone());
        }
        let offer = self.sign_offer(mode, kp, left)?;
        offers.insert(mode, offer.clone());
        Ok(offer)
    }

    fn sign_offer(
        &self,
        mode: CryptoMode,
        keypair: Arc<KemKeyPair>,
        valid_for: Duration,
    ) -> Result<Offer, RelayError> {
        let pk = keypair.public_key();
        let id = key_id(pk.as_bytes());
        let expires_at_ms = nano_proto::now_ms()
            .saturating_add(u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX));
        let content = key_exchange_content(mode, id, expires_at_ms, pk.as_bytes());
        let started = std::time::Instant::now();
        let sig = self
            .identity
            .sign(mode, SigContext::RelayKeyExchange, &content, &mut OsRng)?;
        self.metrics.crypto_op("sign", mode, started.elapsed());
        Ok(Offer {
            key_id: id,
            expires_at_ms,
            frame: RelayFrame::KeyExchange {
                crypto_mode: mode,
                key_id: id,
                public_key: Bytes(pk.as_bytes().to_vec()),
                signature: Bytes(sig.as_bytes().to_vec()),
                expires_at_ms,
            },
            keypair,
        })
    }

    /// Completes an exchange: decapsulates `ciphertext` with `offer`'s key; returns the
    /// `key_exchange_ok` frame, whose confirmation is keyed by the derived key (blocking).
    ///
    /// # Errors
    /// `invalid_key` for a ciphertext of the wrong length or one that does not decapsulate.
    pub fn complete(&self, offer: &Offer, ciphertext: &[u8]) -> Result<RelayFrame, RelayError> {
        let mode = offer.keypair.mode();
        let ct = KemCiphertext::from_bytes(mode, ciphertext)?;
        let started = std::time::Instant::now();
        let ss = offer.keypair.decapsulate(&ct)?;
        self.metrics
            .crypto_op("kem_decapsulate", mode, started.elapsed());
        let key = channel_key(&ss, mode, offer.key_id, &offer.keypair.public_key(), &ct)?;
        let frame = RelayFrame::KeyExchangeOk {
            key_id: offer.key_id,
            confirmation: Bytes(confirmation(&key, offer.key_id).to_vec()),
        };
        Ok(frame)
    }
}
