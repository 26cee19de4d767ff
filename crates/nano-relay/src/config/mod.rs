//! `relay.toml`: every key of the performance guide's `[server]`, `[performance]`, `[memory]`,
//! `[caching]` and `[debug]` sections, plus `[storage]`, `[security]`, `[tls]` and `[limits]`.
//!
//! Unknown keys and bad values are startup errors naming the key (`server.api_port`). Omitted
//! keys take the development defaults. The storage URL, the L2 cache URL and the TLS key path can
//! come from the environment (`NANO_STORAGE_URL`, `NANO_L2_CACHE_URL`, `NANO_L2_KEY_PREFIX`,
//! `NANO_TLS_KEY_PATH`), so
//! secrets need not live in the file; such URLs are [`SecretUrl`]s, whose `Debug` hides the
//! password.
//!
//! One file per section, each with its own `validate`; [`RelayConfig::validate`] runs them all
//! and the checks across sections, and is the only way to the [`ValidConfig`] that
//! [`crate::start`] requires. `machine` checks the configuration against this machine (files,
//! directories, descriptors).

mod caching;
mod debug;
mod limits;
pub mod machine;
mod memory;
mod performance;
mod security;
mod server;
mod storage;
mod tls;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use caching::CachingConfig;
pub use debug::DebugConfig;
pub use limits::LimitsConfig;
pub use memory::MemoryConfig;
pub use performance::PerformanceConfig;
pub use security::SecurityConfig;
pub use server::ServerConfig;
pub use storage::StorageConfig;
pub use tls::TlsConfig;

use crate::error::StartupError;

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> StartupError {
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
pub(super) const MAX_RETENTION_DAYS: u32 = 30;
const _: () = assert!(MAX_RETENTION_DAYS as i64 * 86_400_000 == nano_proto::REPLAY_WINDOW_MS);

pub(super) fn range<T: PartialOrd + std::fmt::Display>(
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
    pub fn from_toml(text: &str) -> Result<ValidConfig, StartupError> {
        Self::parse(text)?.validate()
    }

    fn read(path: &std::path::Path) -> Result<String, StartupError> {
        std::fs::read_to_string(path).map_err(|e| StartupError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Reads, parses and validates a file.
    pub fn from_file(path: &std::path::Path) -> Result<ValidConfig, StartupError> {
        Self::from_toml(&Self::read(path)?)
    }

    /// What the relay runs with: the file (or the defaults without one), then the environment
    /// overrides, then one validation of the result.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ValidConfig, StartupError> {
        let mut cfg = match path {
            Some(p) => Self::parse(&Self::read(p)?)?,
            None => Self::default(),
        };
        cfg.apply_env(env);
        cfg.validate()
    }

    /// Applies `NANO_STORAGE_URL`, `NANO_L2_CACHE_URL`, `NANO_L2_KEY_PREFIX` and
    /// `NANO_TLS_KEY_PATH` from `env` (the result is validated by [`RelayConfig::load`]).
    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(url) = env("NANO_STORAGE_URL") {
            self.storage.url = SecretUrl::new(url);
        }
        if let Some(url) = env("NANO_L2_CACHE_URL") {
            self.caching.l2_cache_url = Some(SecretUrl::new(url));
        }
        if let Some(p) = env("NANO_L2_KEY_PREFIX") {
            self.caching.l2_key_prefix = p;
        }
        if let Some(p) = env("NANO_TLS_KEY_PATH") {
            self.tls.key_path = Some(PathBuf::from(p));
        }
    }

    /// Checks every section's ranges, then the combinations across sections; the result is
    /// the [`ValidConfig`] the relay starts with.
    ///
    /// # Errors
    /// [`StartupError::ConfigInvalid`] naming the first key at fault.
    pub fn validate(self) -> Result<ValidConfig, StartupError> {
        self.server.validate()?;
        self.performance.validate()?;
        self.memory.validate()?;
        self.caching.validate()?;
        self.debug.validate()?;
        self.storage.validate()?;
        self.security.validate()?;
        self.tls.validate()?;
        self.limits.validate()?;
        if let Some(u) = &self.server.public_websocket_url
            && self.tls.enabled
            && u.starts_with("ws://")
        {
            return Err(invalid(
                "server.public_websocket_url",
                "ws:// while [tls] is enabled: clients would speak plain WebSocket to a TLS \
                     port (use wss://)",
            ));
        }
        Ok(ValidConfig(self))
    }

    /// The configuration a shipped template describes.
    pub fn for_environment(env: Environment) -> Result<ValidConfig, StartupError> {
        Self::from_toml(template(env))
    }
}

/// The commented `relay.toml` template for `env` (also shipped as `config/relay.*.toml`).
pub fn template(env: Environment) -> &'static str {
    match env {
        Environment::Development => include_str!("../../../../config/relay.development.toml"),
        Environment::Production => include_str!("../../../../config/relay.production.toml"),
    }
}

/// A configuration that passed [`RelayConfig::validate`]: what [`crate::start`] requires. Reads
/// as a [`RelayConfig`]; to change one, take it apart with [`ValidConfig::into_inner`] and
/// validate again.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(RelayConfig);

impl ValidConfig {
    /// The configuration, to change and validate again.
    pub fn into_inner(self) -> RelayConfig {
        self.0
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = RelayConfig;

    fn deref(&self) -> &RelayConfig {
        &self.0
    }
}

/// A URL that may carry a password (`postgres://user:password@host/db`, `redis://:pw@host`).
/// `Debug` shows it with the password replaced by `***`; [`SecretUrl::expose`] gives the URL to
/// the one place that connects with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return url.clone();
        };
        let userinfo = &rest[..at];
        let user = userinfo.split(':').next().unwrap_or_default();
        let masked = if userinfo.contains(':') {
            format!("{user}:***")
        } else {
            user.to_owned()
        };
        format!("{}{masked}{}", &url[..scheme_end], &rest[at..])
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_urls_hide_their_passwords() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db.example:5432/nano",
                "postgres://app:***@db.example:5432/nano",
            ),
            ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
            ("postgres://app@db/nano", "postgres://app@db/nano"),
            ("sqlite://./data/relay.db", "sqlite://./data/relay.db"),
            ("postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
        ] {
            let s = SecretUrl::new(url);
            assert_eq!(s.redacted(), shown);
            assert_eq!(s.expose(), url);
            assert!(!format!("{s:?}").contains("s3cret"));
        }
        let mut cfg = RelayConfig::default();
        cfg.storage.url = SecretUrl::new("postgres://app:hunter2@db/nano");
        cfg.caching.l2_cache_url = Some(SecretUrl::new("redis://:hunter3@cache"));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
