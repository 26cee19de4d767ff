//! relay.toml: the shipped templates, the guide's own snippets, and every way a file can be wrong
//! (each error names the key).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::CryptoMode;
use nano_relay::StartupError;
use nano_relay::config::{Environment, RelayConfig, SecretUrl, template};

/// The performance guide's "High-Performance relay.toml", verbatim.
const GUIDE_PRODUCTION: &str = r#"
[server]
bind_address = "0.0.0.0"
api_port = 8080
websocket_port = 8443
worker_threads = 16                    # Number of CPU cores
max_connections = 10000
connection_timeout_seconds = 30
keep_alive_seconds = 300

[performance]
# Crypto optimizations
enable_key_caching = true
key_cache_size = 10000
key_cache_ttl_seconds = 300

# Message batching
message_batch_size = 100
message_batch_timeout_ms = 50

# Network optimizations
tcp_nodelay = true
tcp_keepalive = true
socket_buffer_size = 65536

[memory]
# Memory pool configuration
enable_memory_pools = true
key_pool_size = 1000
message_pool_size = 5000

# Secure memory
use_secure_allocator = true
max_locked_memory_mb = 256

[caching]
# Multi-level caching
enable_l1_cache = true
l1_cache_size = 10000
l1_cache_ttl_seconds = 60

enable_l2_cache = true
l2_cache_url = "redis://localhost:6379"
l2_cache_ttl_seconds = 3600
"#;

/// The guide's "Development relay.toml", verbatim.
const GUIDE_DEVELOPMENT: &str = r#"
[server]
bind_address = "127.0.0.1"
api_port = 8080
websocket_port = 8443
worker_threads = 4
max_connections = 100

[performance]
# Reduced caching for development
enable_key_caching = true
key_cache_size = 100
key_cache_ttl_seconds = 60

# Smaller batches for faster feedback
message_batch_size = 10
message_batch_timeout_ms = 100

[memory]
# Minimal memory usage
enable_memory_pools = false
use_secure_allocator = false

[caching]
# Simple in-memory caching only
enable_l1_cache = true
l1_cache_size = 1000
l1_cache_ttl_seconds = 300
enable_l2_cache = false

[debug]
# Development debugging features
enable_profiling = true
profile_duration_seconds = 60
log_crypto_operations = true
detailed_metrics = true
"#;

#[test]
fn guide_snippets_parse_with_their_values() {
    let p = RelayConfig::from_toml(GUIDE_PRODUCTION).unwrap();
    assert_eq!(p.server.worker_threads, 16);
    assert_eq!(p.server.max_connections, 10_000);
    assert_eq!(p.server.keep_alive_seconds, 300);
    assert_eq!(p.performance.key_cache_size, 10_000);
    assert_eq!(p.performance.message_batch_size, 100);
    assert_eq!(p.performance.message_batch_timeout_ms, 50);
    assert_eq!(p.performance.socket_buffer_size, 65_536);
    assert!(p.memory.use_secure_allocator);
    assert_eq!(p.memory.max_locked_memory_mb, 256);
    assert_eq!(
        p.caching.l2_cache_url.as_ref().map(SecretUrl::expose),
        Some("redis://localhost:6379")
    );
    let d = RelayConfig::from_toml(GUIDE_DEVELOPMENT).unwrap();
    assert_eq!(d.server.worker_threads, 4);
    assert!(d.debug.enable_profiling && d.debug.log_crypto_operations && d.debug.detailed_metrics);
    assert!(!d.caching.enable_l2_cache);
}

#[test]
fn shipped_templates_are_valid_and_say_what_they_mean() {
    let dev = RelayConfig::for_environment(Environment::Development).unwrap();
    assert!(dev.tls.enabled && dev.tls.self_signed);
    assert!(dev.security.allow_anonymous_send && dev.security.allow_opaque_payloads);
    assert_eq!(dev.limits.max_message_bytes, nano_proto::MAX_MESSAGE_BYTES);
    assert!(dev.storage.url.expose().starts_with("sqlite://"));
    assert_eq!(dev.server.bind_address.to_string(), "127.0.0.1");
    let prod = RelayConfig::for_environment(Environment::Production).unwrap();
    assert_eq!(prod.security.minimum_crypto_mode, CryptoMode::Hybrid);
    assert!(!prod.security.allow_anonymous_send && !prod.security.allow_opaque_payloads);
    assert!(prod.storage.url.expose().starts_with("postgres://"));
    assert!(prod.tls.enabled && !prod.tls.self_signed && prod.tls.cert_path.is_some());
    // The files in config/ are the templates.
    for (env, file) in [
        (Environment::Development, "relay.development.toml"),
        (Environment::Production, "relay.production.toml"),
    ] {
        let path = format!("{}/../../config/{file}", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), template(env));
        assert!(RelayConfig::from_file(std::path::Path::new(&path)).is_ok());
    }
}

#[test]
fn no_file_means_plain_loopback_development_defaults() {
    // Test traffic is never accepted by default: only the development template opts in.
    let d = RelayConfig::default();
    assert!(!d.security.allow_anonymous_send && !d.security.allow_opaque_payloads);
    let c = RelayConfig::from_toml("").unwrap();
    assert_eq!(*c, RelayConfig::default());
    assert!(!c.tls.enabled);
    assert_eq!((c.server.api_port, c.server.websocket_port), (8080, 8443));
    assert!(c.server.bind_address.is_loopback());
}

fn err(text: &str) -> String {
    RelayConfig::from_toml(text).unwrap_err().to_string()
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    for (text, needle) in [
        ("[server]\napi_prot = 1\n", "api_prot"),
        ("[servre]\n", "servre"),
        ("[server]\napi_port = \"eighty\"\n", "api_port"),
        ("[server]\napi_port = 70000\n", "api_port"),
        (
            "[server]\nbind_address = \"localhost:80\"\n",
            "bind_address",
        ),
        (
            "[security]\nminimum_crypto_mode = \"post-quantum\"\n",
            "minimum_crypto_mode",
        ),
        (
            "[performance]\nmessage_batch_size = -1\n",
            "message_batch_size",
        ),
        ("[limits]\nsend_queue_depth = true\n", "send_queue_depth"),
        ("not toml at all", "expected"),
    ] {
        let e = err(text);
        assert!(e.contains(needle), "{text:?} -> {e}");
    }
}

#[test]
fn bad_values_name_the_key() {
    for (text, key) in [
        ("[server]\nwebsocket_port = 8080\n", "server.websocket_port"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[server]\nthread_stack_size = 1024\n",
            "server.thread_stack_size",
        ),
        ("[server]\nthread_name = \"\"\n", "server.thread_name"),
        (
            "[server]\nthread_name = \"a\\u0000b\"\n",
            "server.thread_name",
        ),
        (
            "[caching]\nl1_cache_ttl_seconds = 3600\n",
            "caching.l1_cache_ttl_seconds",
        ),
        ("[tls]\nself_signed = true\n", "tls.enabled"),
        (
            "[tls]\nenabled = true\nself_signed = true\ncert_path = \"c.pem\"\n",
            "tls.self_signed",
        ),
        (
            "[limits]\nmax_frame_bytes = 8192\n",
            "limits.max_frame_bytes",
        ),
        (
            "[limits]\nmax_frame_bytes = 100000000\n",
            "limits.max_frame_bytes",
        ),
        (
            "[performance]\nmessage_batch_size = 0\n",
            "performance.message_batch_size",
        ),
        (
            "[performance]\nmessage_batch_timeout_ms = 0\n",
            "performance.message_batch_timeout_ms",
        ),
        (
            "[performance]\nkey_cache_ttl_seconds = 0\n",
            "performance.key_cache_ttl_seconds",
        ),
        (
            "[memory]\nmax_locked_memory_mb = 0\n",
            "memory.max_locked_memory_mb",
        ),
        (
            "[caching]\nenable_l2_cache = true\n",
            "caching.l2_cache_url",
        ),
        (
            "[caching]\nenable_l2_cache = true\nl2_cache_url = \"http://x\"\n",
            "caching.l2_cache_url",
        ),
        ("[storage]\nurl = \"mysql://x\"\n", "storage.url"),
        ("[storage]\nurl = \"sqlite://\"\n", "storage.url"),
        // Values that parse but cannot work.
        ("[storage]\nurl = \"sqlite://:memory:\"\n", "storage.url"),
        (
            "[storage]\nurl = \"sqlite://file:x?mode=memory\"\n",
            "storage.url",
        ),
        (
            "[storage]\nurl = \"postgres://u@h:notaport/db\"\n",
            "storage.url",
        ),
        (
            "[caching]\nenable_l2_cache = true\nl2_cache_url = \"rediss://x:6379\"\n",
            "caching.l2_cache_url",
        ),
        (
            "[caching]\nenable_l2_cache = true\nl2_cache_url = \"redis://x:port\"\n",
            "caching.l2_cache_url",
        ),
        (
            "[server]\npublic_websocket_url = \"ws://relay.example\"\n[tls]\nenabled = true\nself_signed = true\n",
            "server.public_websocket_url",
        ),
        (
            "[limits]\nmax_http_connections = 0\n",
            "limits.max_http_connections",
        ),
        (
            "[limits]\nhttp_header_timeout_seconds = 0\n",
            "limits.http_header_timeout_seconds",
        ),
        ("[tls]\nenabled = true\n", "tls.cert_path"),
        (
            "[limits]\nmax_message_bytes = 300000\n",
            "limits.max_message_bytes",
        ),
        (
            "[limits]\nidle_timeout_seconds = 1\n",
            "limits.idle_timeout_seconds",
        ),
        (
            "[security]\nrate_limit_burst = 0\n",
            "security.rate_limit_burst",
        ),
        // Beyond the protocol's largest message (PROTOCOL.md §6, "Size limits").
        (
            "[limits]\nmax_message_bytes = 95793\n",
            "limits.max_message_bytes",
        ),
        // Beyond the clients' replay window.
        (
            "[storage]\nmessage_retention_days = 31\n",
            "storage.message_retention_days",
        ),
    ] {
        match RelayConfig::from_toml(text) {
            Err(StartupError::ConfigInvalid { key: k, .. }) => assert_eq!(k, key, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn environment_supplies_secrets_and_urls() {
    let dir = std::env::temp_dir().join(format!("nano-relay-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        "[caching]\nenable_l2_cache = true\n[tls]\nenabled = true\ncert_path = \"c.pem\"\n",
    )
    .unwrap();
    // Without the environment the file is incomplete; with it, it loads.
    assert!(RelayConfig::load(Some(&path), |_| None).is_err());
    let env = |k: &str| match k {
        "NANO_STORAGE_URL" => Some("postgres://postgres@127.0.0.1:5432/test".to_owned()),
        "NANO_L2_CACHE_URL" => Some("redis://127.0.0.1:6379".to_owned()),
        "NANO_TLS_KEY_PATH" => Some("/run/secrets/key.pem".to_owned()),
        _ => None,
    };
    let c = RelayConfig::load(Some(&path), env).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(c.caching.enable_l2_cache);
    assert_eq!(
        c.storage.url.expose(),
        "postgres://postgres@127.0.0.1:5432/test"
    );
    assert_eq!(
        c.caching.l2_cache_url.as_ref().map(SecretUrl::expose),
        Some("redis://127.0.0.1:6379")
    );
    assert_eq!(
        c.tls.key_path.as_deref(),
        Some(std::path::Path::new("/run/secrets/key.pem"))
    );
    // A bad value from the environment is refused like one from the file.
    let e = RelayConfig::load(None, |k| {
        (k == "NANO_STORAGE_URL").then(|| "ftp://x".to_owned())
    });
    assert!(matches!(
        e,
        Err(StartupError::ConfigInvalid {
            key: "storage.url",
            ..
        })
    ));
    assert_eq!(
        *RelayConfig::load(None, |_| None).unwrap(),
        RelayConfig::default()
    );
    // A missing file is a clear error.
    let e = RelayConfig::from_file(std::path::Path::new("/nonexistent/relay.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/relay.toml"));
}
