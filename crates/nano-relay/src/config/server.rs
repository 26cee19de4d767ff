//! `[server]`.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use crate::error::StartupError;

use super::{invalid, range};

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

impl ServerConfig {
    /// Checks ranges and combinations the types alone cannot express.
    pub(super) fn validate(&self) -> Result<(), StartupError> {
        let s = self;
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
        if let Some(u) = &s.public_websocket_url
            && !(u.starts_with("ws://") || u.starts_with("wss://"))
        {
            return Err(invalid(
                "server.public_websocket_url",
                "must start with ws:// or wss://",
            ));
        }
        Ok(())
    }
}
