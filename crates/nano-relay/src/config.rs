//! `relay.toml`: every key of the performance guide's `[server]`, `[performance]`, `[memory]`,
//! `[caching]` and `[debug]` sections, plus `[storage]`, `[security]`, `[tls]` and `[limits]`.
//!
//! Unknown keys and bad values are startup errors naming the key (`server.api_port`). Omitted
//! keys take the development defaults. The storage URL, the L2 cache URL and the TLS key path can
//! come from the environment (`NANO_STORAGE_URL`, `NANO_L2_CACHE_URL`, `NANO_L2_KEY_PREFIX`,
//! `NANO_TLS_KEY_PATH`), so
//! secrets need not live in the file.

use std::net::IpAddr;
use std::path::PathBuf;

use nano_crypto::CryptoMode;
use serde::{Deserialize, Serialize};

use crate::error::StartupError;

fn invalid(key: &'static str, reason: impl Into<String>) -> StartupError {
    StartupError::ConfigInvalid {
        key,
        reason: reason.into(),
    }
}

/// Which template to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Loopback, SQLite, self-signed TLS, anonymous sends allowed, profiling on.
    Development,
    /// All interfaces, PostgreSQL + Redis, certificate files, authenticated sends only.
    Production,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address both listeners bind to.
    pub bind_address: IpAddr,
    /// HTTP API port (0 = any free port).
    pub api_port: u16,
    /// WebSocket port (0 = any free port).
    pub websocket_port: u16,
    /// Tokio worker threads; 0 = one per CPU core.
    pub worker_threads: usize,
    /// Connections beyond this are refused with a close reason.
    pub max_connections: usize,
    /// Seconds a new connection has to finish its handshake.
    pub connection_timeout_seconds: u64,
    /// Seconds idle runtime threads are kept alive (the guide's `thread_keep_alive`).
    pub keep_alive_seconds: u64,
    /// Name of the runtime's threads.
    pub thread_name: String,
    /// Stack size of the runtime's threads, in bytes.
    pub thread_stack_size: usize,
    /// The WebSocket URL announced in `/v1/relay` (behind a proxy or load balancer); derived
    /// from the bind address and port when absent.
    pub public_websocket_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            api_port: 8080,
            websocket_port: 8443,
            worker_threads: 0,
            max_connections: 100,
            connection_timeout_seconds: 30,
            keep_alive_seconds: 60,
            thread_name: "nano-messenger-worker".into(),
            thread_stack_size: 2 * 1024 * 1024,
            public_websocket_url: None,
        }
    }
}

/// `[performance]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceConfig {
    /// Serve `key_exchange` keys from the key cache.
    pub enable_key_caching: bool,
    /// Derived keys the cache holds at most.
    pub key_cache_size: usize,
    /// Seconds a cached ephemeral key is served.
    pub key_cache_ttl_seconds: u64,
    /// Most messages committed in one transaction.
    pub message_batch_size: usize,
    /// Longest a message waits for its batch, in milliseconds.
    pub message_batch_timeout_ms: u64,
    /// Disable Nagle's algorithm on accepted sockets.
    pub tcp_nodelay: bool,
    /// Enable TCP keep-alive on accepted sockets.
    pub tcp_keepalive: bool,
    /// Socket send and receive buffer size, in bytes.
    pub socket_buffer_size: usize,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            enable_key_caching: true,
            key_cache_size: 100,
            key_cache_ttl_seconds: 60,
            message_batch_size: 10,
            message_batch_timeout_ms: 100,
            tcp_nodelay: true,
            tcp_keepalive: true,
            socket_buffer_size: 65_536,
        }
    }
}

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Keep pre-generated key pairs and reusable frame buffers in bounded pools.
    pub enable_memory_pools: bool,
    /// Pre-generated ephemeral KEM key pairs kept ready (shared among the modes).
    pub key_pool_size: usize,
    /// Frame encoding buffers kept for reuse.
    pub message_pool_size: usize,
    /// Keep long-lived secret keys in mlock'ed memory.
    pub use_secure_allocator: bool,
    /// Cap on locked memory, in MiB.
    pub max_locked_memory_mb: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enable_memory_pools: false,
            key_pool_size: 1_000,
            message_pool_size: 5_000,
            use_secure_allocator: false,
            max_locked_memory_mb: 64,
        }
    }
}

/// `[caching]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachingConfig {
    /// In-process cache of user bundles.
    pub enable_l1_cache: bool,
    /// Entries in the L1 cache.
    pub l1_cache_size: usize,
    /// Seconds an L1 entry is served.
    pub l1_cache_ttl_seconds: u64,
    /// Redis as a second cache level.
    pub enable_l2_cache: bool,
    /// Redis URL (`redis://…`); `NANO_L2_CACHE_URL` overrides it.
    pub l2_cache_url: Option<String>,
    /// Seconds an L2 entry lives.
    pub l2_cache_ttl_seconds: u64,
    /// Prefix of every Redis key and channel: relays of one deployment share it.
    pub l2_key_prefix: String,
}

impl Default for CachingConfig {
    fn default() -> Self {
        Self {
            enable_l1_cache: true,
            l1_cache_size: 1_000,
            l1_cache_ttl_seconds: 300,
            enable_l2_cache: false,
            l2_cache_url: None,
            l2_cache_ttl_seconds: 3_600,
            l2_key_prefix: "nano:".into(),
        }
    }
}

/// `[debug]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// Write CPU profiles (builds with `--features profiling`).
    pub enable_profiling: bool,
    /// Seconds covered by each profile.
    pub profile_duration_seconds: u64,
    /// Where profiles are written.
    pub profile_dir: PathBuf,
    /// Log each crypto operation's kind, mode and duration (never keys or content).
    pub log_crypto_operations: bool,
    /// Per-mode and per-code histograms in `/metrics`.
    pub detailed_metrics: bool,
}

impl Default for DebugConfig {
    fn default() -> Self {
        Self {
            enable_profiling: false,
            profile_duration_seconds: 60,
            profile_dir: PathBuf::from("./data/profiles"),
            log_crypto_operations: false,
            detailed_metrics: false,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://…`; `NANO_STORAGE_URL` overrides it.
    pub url: String,
    /// Directory for the relay identity key, the SQLite file and generated certificates.
    pub data_dir: PathBuf,
    /// Database connections in the pool.
    pub pool_size: u32,
    /// Seconds between cleanup passes over acked and expired messages.
    pub cleanup_interval_seconds: u64,
    /// Days an undelivered message is kept.
    pub message_retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/relay.db".into(),
            data_dir: PathBuf::from("./data"),
            pool_size: 8,
            cleanup_interval_seconds: 60,
            message_retention_days: 30,
        }
    }
}

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The weakest mode the relay accepts for keys, auth and messages.
    pub minimum_crypto_mode: CryptoMode,
    /// Accept `send_message` before authentication. Such a message has no sender, so its
    /// recipient cannot verify it: test traffic (the performance guide's load test sends
    /// before `auth`), on in the development template only.
    pub allow_anonymous_send: bool,
    /// Accept `send_message` payloads that are not sealed envelopes (the guide's load test
    /// sends plain text); recipients are told such a payload is not an envelope. Off except in
    /// the development template: a production relay stores envelopes only.
    pub allow_opaque_payloads: bool,
    /// Frames per second one connection may send (sustained).
    pub rate_limit_per_connection: u32,
    /// Frames per second all connections from one address may send (sustained).
    pub rate_limit_per_address: u32,
    /// Frames a connection may send in a burst above its rate.
    pub rate_limit_burst: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            minimum_crypto_mode: CryptoMode::Classical,
            allow_anonymous_send: false,
            allow_opaque_payloads: false,
            rate_limit_per_connection: 1_000,
            rate_limit_per_address: 5_000,
            rate_limit_burst: 200,
        }
    }
}

/// `[tls]`. Off by default: plain `ws://` on loopback.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve `wss://` on the WebSocket port.
    pub enabled: bool,
    /// Generate a self-signed certificate for `localhost` (development).
    pub self_signed: bool,
    /// PEM certificate chain (production).
    pub cert_path: Option<PathBuf>,
    /// PEM private key (production); `NANO_TLS_KEY_PATH` overrides it.
    pub key_path: Option<PathBuf>,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Largest `send_message` payload, in bytes.
    pub max_message_bytes: usize,
    /// Most undelivered messages one inbox holds.
    pub inbox_quota: u64,
    /// Seconds without traffic (pings answered count) before a connection is closed.
    pub idle_timeout_seconds: u64,
    /// Frames queued for one connection before it is disconnected as a slow reader.
    pub send_queue_depth: usize,
    /// Payload bytes queued for one connection before it is disconnected as a slow reader.
    pub send_queue_bytes: usize,
    /// HTTP API connections open at once; beyond it, accepting waits for one to close.
    pub max_http_connections: usize,
    /// Seconds an HTTP API connection has to send a complete request head, counted from its
    /// opening or its previous response (so also the idle keep-alive timeout).
    pub http_header_timeout_seconds: u64,
    /// Seconds an HTTP API request has, from its head to its answer (body included); `408
    /// request_timeout` after.
    pub http_request_timeout_seconds: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 256 * 1024,
            max_message_bytes: nano_proto::MAX_MESSAGE_BYTES,
            inbox_quota: 10_000,
            idle_timeout_seconds: 300,
            send_queue_depth: 256,
            send_queue_bytes: 4 * 1024 * 1024,
            max_http_connections: 1024,
            http_header_timeout_seconds: 10,
            http_request_timeout_seconds: 30,
        }
    }
}

/// The whole `relay.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[performance]`.
    pub performance: PerformanceConfig,
    /// `[memory]`.
    pub memory: MemoryConfig,
    /// `[caching]`.
    pub caching: CachingConfig,
    /// `[debug]`.
    pub debug: DebugConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[security]`.
    pub security: SecurityConfig,
    /// `[tls]`.
    pub tls: TlsConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
}

/// Checks `v` lies in `lo..=hi`.
/// The longest `storage.message_retention_days`: the clients' replay window.
const MAX_RETENTION_DAYS: u32 = 30;
const _: () = assert!(MAX_RETENTION_DAYS as i64 * 86_400_000 == nano_proto::REPLAY_WINDOW_MS);

fn range<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), StartupError> {
    if v < lo || v > hi {
        return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(())
}

impl RelayConfig {
    /// Parses TOML text (unknown keys and wrong types are errors) without range checks.
    pub fn parse(text: &str) -> Result<Self, StartupError> {
        toml::from_str(text).map_err(|e| StartupError::ConfigParse(e.to_string()))
    }

    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, StartupError> {
        let cfg = Self::parse(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn read(path: &std::path::Path) -> Result<String, StartupError> {
        std::fs::read_to_string(path).map_err(|e| StartupError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads, parses and validates a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, StartupError> {
        Self::from_toml(&Self::read(path)?)
    }

    /// What the relay runs with: the file (or the defaults without one), then the environment
    /// overrides, then one validation of the result.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, StartupError> {
        let mut cfg = match path {
            Some(p) => Self::parse(&Self::read(p)?)?,
            None => Self::default(),
        };
        cfg.apply_env(env);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `NANO_STORAGE_URL`, `NANO_L2_CACHE_URL` and `NANO_TLS_KEY_PATH` from `env`. Call
    /// [`RelayConfig::validate`] afterwards (as [`RelayConfig::load`] does).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(url) = env("NANO_STORAGE_URL") {
            self.storage.url = url;
        }
        if let Some(url) = env("NANO_L2_CACHE_URL") {
            self.caching.l2_cache_url = Some(url);
        }
        if let Some(p) = env("NANO_L2_KEY_PREFIX") {
            self.caching.l2_key_prefix = p;
        }
        if let Some(p) = env("NANO_TLS_KEY_PATH") {
            self.tls.key_path = Some(PathBuf::from(p));
        }
    }

    /// Checks ranges and combinations the types alone cannot express.
    pub fn validate(&self) -> Result<(), StartupError> {
        let s = &self.server;
        if s.api_port != 0 && s.api_port == s.websocket_port {
            return Err(invalid(
                "server.websocket_port",
                "must differ from server.api_port",
            ));
        }
        range("server.worker_threads", s.worker_threads, 0, 1024)?;
        range("server.max_connections", s.max_connections, 1, 1_000_000)?;
        range(
            "server.connection_timeout_seconds",
            s.connection_timeout_seconds,
            1,
            3600,
        )?;
        range("server.keep_alive_seconds", s.keep_alive_seconds, 1, 86_400)?;
        range(
            "server.thread_stack_size",
            s.thread_stack_size,
            64 * 1024,
            64 * 1024 * 1024,
        )?;
        if s.thread_name.is_empty()
            || s.thread_name.len() > 64
            || s.thread_name.chars().any(char::is_control)
        {
            return Err(invalid(
                "server.thread_name",
                "must be 1 to 64 printable characters",
            ));
        }
        let p = &self.performance;
        range(
            "performance.key_cache_size",
            p.key_cache_size,
            1,
            10_000_000,
        )?;
        range(
            "performance.key_cache_ttl_seconds",
            p.key_cache_ttl_seconds,
            1,
            86_400,
        )?;
        range(
            "performance.message_batch_size",
            p.message_batch_size,
            1,
            10_000,
        )?;
        range(
            "performance.message_batch_timeout_ms",
            p.message_batch_timeout_ms,
            1,
            60_000,
        )?;
        range(
            "performance.socket_buffer_size",
            p.socket_buffer_size,
            4096,
            64 * 1024 * 1024,
        )?;
        let m = &self.memory;
        range("memory.key_pool_size", m.key_pool_size, 0, 10_000_000)?;
        range(
            "memory.message_pool_size",
            m.message_pool_size,
            0,
            10_000_000,
        )?;
        range(
            "memory.max_locked_memory_mb",
            m.max_locked_memory_mb,
            1,
            65_536,
        )?;
        let c = &self.caching;
        range("caching.l1_cache_size", c.l1_cache_size, 1, 10_000_000)?;
        // Other relays' L1 caches learn of a key rotation only through pub/sub; a short TTL
        // bounds how long a rotated-away key could be served if a notice is lost.
        range(
            "caching.l1_cache_ttl_seconds",
            c.l1_cache_ttl_seconds,
            1,
            600,
        )?;
        range(
            "caching.l2_cache_ttl_seconds",
            c.l2_cache_ttl_seconds,
            1,
            30 * 86_400,
        )?;
        if c.enable_l2_cache {
            match &c.l2_cache_url {
                Some(u) if u.starts_with("rediss://") => {
                    return Err(invalid(
                        "caching.l2_cache_url",
                        "rediss:// (TLS) is not built in: use redis:// on a private network",
                    ));
                }
                Some(u) if u.starts_with("redis://") => {
                    if let Err(e) = redis::IntoConnectionInfo::into_connection_info(u.as_str()) {
                        return Err(invalid(
                            "caching.l2_cache_url",
                            format!("not a Redis URL: {e}"),
                        ));
                    }
                }
                Some(_) => return Err(invalid("caching.l2_cache_url", "must be a redis:// URL")),
                None => {
                    return Err(invalid(
                        "caching.l2_cache_url",
                        "required when enable_l2_cache = true (or set NANO_L2_CACHE_URL)",
                    ));
                }
            }
        }
        if c.l2_key_prefix.is_empty()
            || c.l2_key_prefix.len() > 64
            || !c.l2_key_prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "caching.l2_key_prefix",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        if let Some(u) = &s.public_websocket_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(invalid(
                    "server.public_websocket_url",
                    "must start with ws:// or wss://",
                ));
            }
            if self.tls.enabled && u.starts_with("ws://") {
                return Err(invalid(
                    "server.public_websocket_url",
                    "ws:// while [tls] is enabled: clients would speak plain WebSocket to a TLS \
                     port (use wss://)",
                ));
            }
        }
        range(
            "debug.profile_duration_seconds",
            self.debug.profile_duration_seconds,
            1,
            86_400,
        )?;
        let st = &self.storage;
        if !(st.url.starts_with("sqlite://")
            || st.url.starts_with("postgres://")
            || st.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "storage.url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if st.url == "sqlite://" {
            return Err(invalid("storage.url", "sqlite:// needs a file path"));
        }
        if let Some(path) = st.url.strip_prefix("sqlite://") {
            if path == ":memory:" || path.starts_with("file:") || path.contains("mode=memory") {
                return Err(invalid(
                    "storage.url",
                    "an in-memory SQLite database is not durable: give a file path",
                ));
            }
        } else if let Err(e) = st.url.parse::<postgres::Config>() {
            return Err(invalid("storage.url", format!("not a PostgreSQL URL: {e}")));
        }
        range("storage.pool_size", st.pool_size, 1, 1024)?;
        range(
            "storage.cleanup_interval_seconds",
            st.cleanup_interval_seconds,
            1,
            86_400,
        )?;
        // Clients refuse envelopes older than the replay window, so keeping one longer only
        // delivers what cannot be opened.
        range(
            "storage.message_retention_days",
            st.message_retention_days,
            1,
            MAX_RETENTION_DAYS,
        )?;
        let sec = &self.security;
        range(
            "security.rate_limit_per_connection",
            sec.rate_limit_per_connection,
            1,
            10_000_000,
        )?;
        range(
            "security.rate_limit_per_address",
            sec.rate_limit_per_address,
            1,
            10_000_000,
        )?;
        range(
            "security.rate_limit_burst",
            sec.rate_limit_burst,
            1,
            10_000_000,
        )?;
        let t = &self.tls;
        let files = t.cert_path.is_some() || t.key_path.is_some();
        if !t.enabled && (t.self_signed || files) {
            return Err(invalid(
                "tls.enabled",
                "self_signed, cert_path and key_path need enabled = true",
            ));
        }
        if t.self_signed && files {
            return Err(invalid(
                "tls.self_signed",
                "choose either self_signed = true or cert_path and key_path",
            ));
        }
        if t.enabled && !t.self_signed && (t.cert_path.is_none() || t.key_path.is_none()) {
            return Err(invalid(
                "tls.cert_path",
                "cert_path and key_path are required unless self_signed = true",
            ));
        }
        let l = &self.limits;
        // A frame must fit the largest auth signature (a quantum one is ~6.2 KiB in base64) and
        // a whole message with its fields; a frame is parsed in memory, so it stays small.
        range(
            "limits.max_frame_bytes",
            l.max_frame_bytes,
            16 * 1024,
            4 * 1024 * 1024,
        )?;
        // Above the protocol's limit no valid frame could use the room; below it the largest
        // plaintext shrinks, and clients learn by how much from `GET /v1/relay`.
        range(
            "limits.max_message_bytes",
            l.max_message_bytes,
            1,
            nano_proto::MAX_MESSAGE_BYTES,
        )?;
        if l.max_message_bytes + 16 * 1024 > l.max_frame_bytes {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be at least 16 KiB smaller than limits.max_frame_bytes",
            ));
        }
        range("limits.inbox_quota", l.inbox_quota, 1, 100_000_000)?;
        range(
            "limits.idle_timeout_seconds",
            l.idle_timeout_seconds,
            5,
            86_400,
        )?;
        range("limits.send_queue_depth", l.send_queue_depth, 1, 1_000_000)?;
        range(
            "limits.send_queue_bytes",
            l.send_queue_bytes,
            64 * 1024,
            1024 * 1024 * 1024,
        )?;
        if l.send_queue_bytes < l.max_message_bytes {
            return Err(invalid(
                "limits.send_queue_bytes",
                "must be at least limits.max_message_bytes",
            ));
        }
        range(
            "limits.max_http_connections",
            l.max_http_connections,
            1,
            1_000_000,
        )?;
        range(
            "limits.http_header_timeout_seconds",
            l.http_header_timeout_seconds,
            1,
            3600,
        )?;
        range(
            "limits.http_request_timeout_seconds",
            l.http_request_timeout_seconds,
            1,
            3600,
        )?;
        Ok(())
    }

    /// The configuration a shipped template describes.
    pub fn for_environment(env: Environment) -> Result<Self, StartupError> {
        Self::from_toml(template(env))
    }
}

/// The commented `relay.toml` template for `env` (also shipped as `config/relay.*.toml`).
pub fn template(env: Environment) -> &'static str {
    match env {
        Environment::Development => include_str!("../../../config/relay.development.toml"),
        Environment::Production => include_str!("../../../config/relay.production.toml"),
    }
}
