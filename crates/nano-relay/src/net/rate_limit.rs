//! Token-bucket rate limits, per connection, per remote address and, for one-time prekey
//! claims, per authenticated requester (`[security]`).
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each frame takes
//! one. The per-address table is an LRU bounded by `max_addresses`, so a flood of distinct
//! addresses cannot grow memory: the least recently seen address is forgotten and starts again
//! with a full bucket (its connections' own buckets still apply). Time comes from an injected
//! [`Clock`].
//!
//! Why not `governor`: its keyed limiter keeps every key until `retain_recent` runs, so a
//! flood of distinct addresses grows it without bound between passes, where this table is an
//! `lru::LruCache` with a fixed capacity; and one bucket type then serves both limits.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;
use nano_crypto::Clock;

/// One token bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second up to `burst` (both at least 1).
    pub(crate) fn new(rate: u32, burst: u32, now: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per key, bounded: the least recently seen key is forgotten first.
pub struct KeyedLimiter<K: std::hash::Hash + Eq, C: Clock> {
    buckets: LruCache<K, TokenBucket>,
    rate: u32,
    burst: u32,
    clock: C,
}

/// Per-address buckets.
pub(crate) type AddressLimiter<C> = KeyedLimiter<IpAddr, C>;

impl<K: std::hash::Hash + Eq, C: Clock> std::fmt::Debug for KeyedLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("keys", &self.buckets.len())
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish()
    }
}

impl<K: std::hash::Hash + Eq, C: Clock> KeyedLimiter<K, C> {
    /// A limiter remembering at most `max_keys` keys, each allowed `rate` per second after a
    /// burst of `burst`.
    pub fn new(rate: u32, burst: u32, max_keys: usize, clock: C) -> Self {
        Self {
            buckets: LruCache::new(NonZeroUsize::new(max_keys).unwrap_or(NonZeroUsize::MIN)),
            rate,
            burst,
            clock,
        }
    }

    /// Whether `key` may take one more token now.
    pub fn allow_key(&mut self, key: K) -> bool {
        let now = self.clock.now();
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .get_or_insert_mut(key, || TokenBucket::new(rate, burst, now))
            .try_take(now)
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

impl<C: Clock> KeyedLimiter<IpAddr, C> {
    /// Whether `addr` may send one more frame now. IPv6 addresses count per /64 (one host
    /// usually owns a whole /64); IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allow(&mut self, addr: IpAddr) -> bool {
        self.allow_key(limit_key(addr))
    }
}

/// The address a limit applies to.
fn limit_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nano_crypto::ManualClock;

    #[test]
    fn burst_then_refill_at_rate() {
        let clock = ManualClock::new();
        let mut b = TokenBucket::new(10, 3, clock.now());
        assert!((0..3).all(|_| b.try_take(clock.now())));
        assert!(!b.try_take(clock.now()));
        clock.advance(Duration::from_millis(99));
        assert!(!b.try_take(clock.now()));
        clock.advance(Duration::from_millis(1));
        assert!(b.try_take(clock.now()));
        assert!(!b.try_take(clock.now()));
        // A long pause refills only up to the burst.
        clock.advance(Duration::from_secs(60));
        assert_eq!((0..10).filter(|_| b.try_take(clock.now())).count(), 3);
    }

    #[test]
    fn zero_settings_mean_one() {
        let mut b = TokenBucket::new(0, 0, Duration::ZERO);
        assert!(b.try_take(Duration::ZERO));
        assert!(!b.try_take(Duration::ZERO));
        assert!(b.try_take(Duration::from_secs(1)));
    }

    #[test]
    fn time_going_backwards_never_adds_tokens() {
        let mut b = TokenBucket::new(1, 1, Duration::from_secs(10));
        assert!(b.try_take(Duration::from_secs(10)));
        assert!(!b.try_take(Duration::from_secs(5)));
        assert!(!b.try_take(Duration::from_secs(10)));
        assert!(b.try_take(Duration::from_secs(11)));
    }

    #[test]
    fn addresses_are_independent_and_bounded() {
        let clock = ManualClock::new();
        let mut l = AddressLimiter::new(1, 2, 4, clock.clone());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
        for i in 0..100u8 {
            l.allow(IpAddr::from([10, 0, 0, i]));
            assert!(l.len() <= 4);
        }
        clock.advance(Duration::from_secs(1));
        assert!(l.allow(b));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let mut l = AddressLimiter::new(1, 1, 16, ManualClock::new());
        assert!(l.allow("2001:db8::1".parse().unwrap()));
        assert!(!l.allow("2001:db8::ffff:2".parse().unwrap()));
        assert!(l.allow("2001:db8:0:1::1".parse().unwrap()));
        assert!(l.allow("192.0.2.1".parse().unwrap()));
        assert!(!l.allow("::ffff:192.0.2.1".parse().unwrap()));
    }
}
