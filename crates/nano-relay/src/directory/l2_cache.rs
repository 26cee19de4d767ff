//! The Redis (L2) cache of user bundles and signed prekeys, and the invalidation channel
//! (`[caching] enable_l2_cache`, `l2_cache_url`, `l2_cache_ttl_seconds`).
//!
//! Entries are `SET key value EX ttl` under a key prefix (one per deployment, or per test so
//! tests never share keys): `user:{name}` (a value that names its layout in its first byte) and
//! `prekeys:v2:{mode}:{name}` (the prekey bundle version). Invalidation deletes a
//! user's keys and publishes the username on the prefix's invalidation channel, so every relay
//! drops the user from its L1 too. The connection is
//! synchronous, used from blocking tasks only, with a bounded timeout; after an I/O error it is
//! re-established on the next call, so a Redis restart costs one failed lookup, never a
//! stuck relay. A cache failure is never fatal: callers fall through to the database.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::error::RelayError;

impl From<redis::RedisError> for RelayError {
    fn from(e: redis::RedisError) -> Self {
        // Redis errors carry no credentials or values; the URL is never part of them.
        Self::Cache(e.to_string())
    }
}

/// A Redis-backed cache level.
pub struct RedisCache {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    prefix: String,
    ttl_seconds: u64,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url`; keys live under `prefix`, entries for `ttl_seconds` (at least 1).
    pub fn connect(
        url: &str,
        prefix: &str,
        ttl_seconds: u64,
        timeout: Duration,
    ) -> Result<Self, RelayError> {
        let client = redis::Client::open(url)?;
        let cache = Self {
            client,
            conn: Mutex::new(None),
            prefix: prefix.to_owned(),
            ttl_seconds: ttl_seconds.max(1),
            timeout,
        };
        cache.with_conn(|c| redis::cmd("PING").query::<String>(c).map(|_| ()))?;
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, Option<redis::Connection>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RelayError> {
        let mut guard = self.lock();
        if guard.is_none() {
            let c = self.client.get_connection_with_timeout(self.timeout)?;
            c.set_read_timeout(Some(self.timeout))?;
            c.set_write_timeout(Some(self.timeout))?;
            *guard = Some(c);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(RelayError::Cache("no connection".into()));
        };
        let res = f(conn);
        if let Err(e) = &res
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            *guard = None;
        }
        Ok(res?)
    }

    /// One key for every version of the relay, so an invalidation by any of them covers all;
    /// the value names its own layout (`directory::encode_l2`).
    fn key(&self, name: &str) -> String {
        format!("{}user:{name}", self.prefix)
    }

    /// Named with the prekey bundle version, so records of an older format cached before an
    /// upgrade are never read.
    fn prekeys_key(&self, name: &str, mode: nano_crypto::CryptoMode) -> String {
        let v = nano_crypto::session::PREKEY_BUNDLE_VERSION;
        format!("{}prekeys:v{v}:{mode}:{name}", self.prefix)
    }

    /// The invalidation channel every relay of this deployment subscribes to.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// The cached value for `name`.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RelayError> {
        self.get_at(&self.key(name))
    }

    /// Caches `value` for `name` with the configured TTL.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<(), RelayError> {
        self.put_at(&self.key(name), value)
    }

    /// The cached signed-prekeys record of `name` in `mode`.
    pub fn get_prekeys(
        &self,
        name: &str,
        mode: nano_crypto::CryptoMode,
    ) -> Result<Option<Vec<u8>>, RelayError> {
        self.get_at(&self.prekeys_key(name, mode))
    }

    /// Caches the signed-prekeys record of `name` in `mode` with the configured TTL.
    pub fn put_prekeys(
        &self,
        name: &str,
        mode: nano_crypto::CryptoMode,
        record: &[u8],
    ) -> Result<(), RelayError> {
        self.put_at(&self.prekeys_key(name, mode), record)
    }

    fn get_at(&self, key: &str) -> Result<Option<Vec<u8>>, RelayError> {
        self.with_conn(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn put_at(&self, key: &str, value: &[u8]) -> Result<(), RelayError> {
        let ttl = self.ttl_seconds;
        self.with_conn(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query(c)
        })
    }

    /// Removes `name`'s cached bundle only (a damaged value), telling no other relay.
    pub fn delete(&self, name: &str) -> Result<(), RelayError> {
        let key = self.key(name);
        self.with_conn(|c| redis::cmd("DEL").arg(&key).query::<u64>(c))
            .map(|_| ())
    }

    /// Removes `name`'s bundle and signed prekeys and tells every relay to drop them from L1;
    /// returns how many relays heard.
    pub fn invalidate(&self, name: &str) -> Result<u64, RelayError> {
        let mut keys = vec![self.key(name)];
        keys.extend(
            nano_crypto::CryptoMode::ALL
                .iter()
                .map(|m| self.prekeys_key(name, *m)),
        );
        let channel = self.invalidation_channel();
        self.with_conn(|c| {
            redis::cmd("DEL").arg(&keys).query::<u64>(c)?;
            redis::cmd("PUBLISH").arg(&channel).arg(name).query(c)
        })
    }

    /// `prefix ‖ name`: a channel of this deployment.
    pub fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Publishes each of `payloads` on `channel`, in one round trip.
    pub fn publish(&self, channel: &str, payloads: &[String]) -> Result<(), RelayError> {
        self.with_conn(|c| {
            let mut p = redis::pipe();
            for m in payloads {
                p.cmd("PUBLISH").arg(channel).arg(m).ignore();
            }
            p.query::<()>(c)
        })
    }

    /// A new connection for subscribing, with `read_timeout` so the subscriber can notice
    /// shutdown.
    pub fn subscriber_connection(
        &self,
        read_timeout: Duration,
    ) -> Result<redis::Connection, RelayError> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(read_timeout))?;
        Ok(c)
    }

    /// Seconds until `name`'s entry expires (`None` when absent).
    pub fn ttl(&self, name: &str) -> Result<Option<u64>, RelayError> {
        let key = self.key(name);
        let t: i64 = self.with_conn(|c| redis::cmd("TTL").arg(&key).query(c))?;
        Ok(u64::try_from(t).ok())
    }
}
