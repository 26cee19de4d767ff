//! The generated `relay.toml`.

use std::path::Path;

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `relay.toml` under construction: sections of `key = value` lines (values are TOML
/// literals). `[storage]` is completed when the relay starts (data dir in its temp dir).
#[derive(Debug, Clone)]
pub struct Config {
    sections: Vec<(String, Vec<(String, String)>)>,
    storage_url: Option<String>,
}

impl Config {
    /// Port 0 for both listeners, SQLite, classical floor, no L2 cache; everything else at the
    /// relay's defaults.
    pub fn minimal() -> Self {
        Self {
            sections: Vec::new(),
            storage_url: None,
        }
        .set("server", "api_port", 0)
        .set("server", "websocket_port", 0)
        .set("security", "minimum_crypto_mode", toml_str("classical"))
        .set("caching", "enable_l2_cache", false)
    }

    /// [`Config::minimal`] with anonymous sends, opaque payloads and the brief's limits.
    pub fn new() -> Self {
        Self::minimal()
            .set("security", "allow_anonymous_send", true)
            .set("security", "allow_opaque_payloads", true)
            .set("limits", "send_queue_depth", 256)
            .set("limits", "max_frame_bytes", 262_144)
            .set("limits", "inbox_quota", 10_000)
            .set("limits", "idle_timeout_seconds", 300)
    }

    /// Sets `[section] key = value` (`value` is written as is: quote strings with [`toml_str`]).
    pub fn set(mut self, section: &str, key: &str, value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[idx].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => keys.push((key.to_owned(), value)),
        }
        self
    }

    /// Uses this storage URL instead of a SQLite file in the relay's temp dir.
    pub fn storage_url(mut self, url: &str) -> Self {
        self.storage_url = Some(url.to_owned());
        self
    }

    /// Turns the Redis L2 cache (and cross-relay notices) on.
    pub fn l2(self, redis_url: &str, prefix: &str) -> Self {
        self.set("caching", "enable_l2_cache", true)
            .set("caching", "l2_cache_url", toml_str(redis_url))
            .set("caching", "l2_key_prefix", toml_str(prefix))
            .set("caching", "l2_cache_ttl_seconds", 120)
    }

    /// Both listening ports.
    pub fn ports(self, api: u16, ws: u16) -> Self {
        self.set("server", "api_port", api)
            .set("server", "websocket_port", ws)
    }

    /// The file text for a relay whose temp dir is `dir`.
    pub fn render(&self, dir: &Path) -> String {
        let url = self
            .storage_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("relay.db").display()));
        let cfg = self.clone().set("storage", "url", toml_str(&url)).set(
            "storage",
            "data_dir",
            toml_str(&dir.join("data").display().to_string()),
        );
        let mut out = String::new();
        for (section, keys) in &cfg.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
