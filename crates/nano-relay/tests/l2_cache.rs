//! The Redis L2 cache against a real Redis (runs when `NANO_TEST_REDIS_URL` is set; each test
//! uses its own key prefix).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use nano_relay::directory::l2_cache::RedisCache;

fn cache(test: &str, ttl: u64) -> Option<(RedisCache, String)> {
    let Ok(url) = std::env::var("NANO_TEST_REDIS_URL") else {
        eprintln!("skipping {test}: NANO_TEST_REDIS_URL is not set");
        return None;
    };
    let prefix = format!("nano-test:{test}:{}:", std::process::id());
    Some((
        RedisCache::connect(&url, &prefix, ttl, Duration::from_secs(2)).unwrap(),
        url,
    ))
}

/// Runs `f` while another relay, as it were, listens on `c`'s invalidation channel (a read
/// waits at most `wait`).
fn listening(c: &RedisCache, url: &str, wait: Duration, f: impl FnOnce(&mut redis::PubSub<'_>)) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut sub = conn.as_pubsub();
    sub.subscribe(c.invalidation_channel()).unwrap();
    f(&mut sub);
}

#[test]
fn put_get_ttl_and_invalidate_with_notice() {
    let Some((c, url)) = cache("basic", 3600) else {
        return;
    };
    assert_eq!(c.get("alice").unwrap(), None);
    c.put("alice", b"\x00bundle\xff").unwrap();
    assert_eq!(
        c.get("alice").unwrap().as_deref(),
        Some(&b"\x00bundle\xff"[..])
    );
    let ttl = c.ttl("alice").unwrap().unwrap();
    assert!((3590..=3600).contains(&ttl), "{ttl}");

    listening(&c, &url, Duration::from_secs(5), |sub| {
        assert_eq!(c.invalidate("alice").unwrap(), 1);
        let msg = sub.get_message().unwrap();
        assert_eq!(msg.get_payload::<String>().unwrap(), "alice");
    });
    assert_eq!(c.get("alice").unwrap(), None);
    assert_eq!(c.ttl("alice").unwrap(), None);
}

#[test]
fn prefixes_isolate_deployments() {
    let Some((a, url)) = cache("iso-a", 60) else {
        return;
    };
    let b = RedisCache::connect(
        &url,
        &format!("nano-test:iso-b:{}:", std::process::id()),
        60,
        Duration::from_secs(2),
    )
    .unwrap();
    a.put("bob", b"A").unwrap();
    // Stored under a's prefix, invisible under b's; b's own value does not touch a's.
    assert_eq!(a.get("bob").unwrap().as_deref(), Some(&b"A"[..]));
    assert_eq!(b.get("bob").unwrap(), None);
    b.put("bob", b"B").unwrap();
    assert_eq!(a.get("bob").unwrap().as_deref(), Some(&b"A"[..]));
    assert_eq!(b.get("bob").unwrap().as_deref(), Some(&b"B"[..]));
    a.invalidate("bob").unwrap();
    assert_eq!(a.get("bob").unwrap(), None);
    assert_eq!(b.get("bob").unwrap().as_deref(), Some(&b"B"[..]));
    b.invalidate("bob").unwrap();
}

#[test]
fn unreachable_redis_is_an_error_not_a_hang() {
    // Port 1 on loopback refuses at once.
    let e = RedisCache::connect("redis://127.0.0.1:1", "x:", 60, Duration::from_millis(500))
        .unwrap_err();
    assert!(e.to_string().contains("L2 cache unavailable"));
    assert!(RedisCache::connect("not a url", "x:", 60, Duration::from_millis(500)).is_err());
}

#[test]
fn a_delete_drops_the_bundle_and_tells_no_other_relay() {
    let Some((c, url)) = cache("delete", 60) else {
        return;
    };
    c.put("alice", b"damaged").unwrap();
    listening(&c, &url, Duration::from_millis(300), |sub| {
        c.delete("alice").unwrap();
        assert_eq!(c.get("alice").unwrap(), None);
        assert!(sub.get_message().is_err(), "a delete publishes nothing");
    });
}
