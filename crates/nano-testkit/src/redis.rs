//! Redis (the L2 cache and cross-relay notices) for one test.

use std::time::Duration;

use tokio::time::timeout;

use crate::{WAIT, random_hex};

/// `NANO_TEST_REDIS_URL`, or `None` (saying why `test` skips).
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("NANO_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            eprintln!("skipping {test}: NANO_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// A fresh key prefix (`t<hex>:`), so tests sharing a Redis do not see each other's keys.
pub fn redis_prefix() -> String {
    format!("t{}:", random_hex(6))
}

/// Waits until at least `n` clients subscribe to the Redis `channel`.
pub async fn wait_for_subscribers(url: &str, channel: &str, n: i64) {
    let (url, ch) = (url.to_owned(), channel.to_owned());
    let waiter = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(url.as_str()).expect("redis URL");
        let mut con = client.get_connection().expect("redis connection");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&ch)
                .query(&mut con)
                .expect("PUBSUB NUMSUB");
            if count >= n || std::time::Instant::now() >= deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let got = timeout(WAIT + WAIT, waiter)
        .await
        .expect("Redis did not answer")
        .expect("redis waiter");
    assert!(got >= n, "only {got} of {n} relays subscribed to {channel}");
}

/// Deletes the Redis keys under `prefix` (best effort).
pub async fn redis_cleanup(url: &str, prefix: &str) {
    let (url, pattern) = (url.to_owned(), format!("{prefix}*"));
    let cleanup = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut con = client.get_connection().ok()?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut con).ok()?;
        if !keys.is_empty() {
            let _: Option<i64> = redis::cmd("DEL").arg(&keys).query(&mut con).ok();
        }
        Some(())
    });
    let _ = timeout(WAIT, cleanup).await;
}
