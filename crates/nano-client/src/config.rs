//! How a client reaches its relay and as whom: [`ClientConfig`].

use std::sync::Arc;

use crate::error::Result;

/// How to reach a relay and as whom.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The relay's HTTP API URL, e.g. `http://127.0.0.1:8080`.
    pub relay_url: String,
    /// The user's name.
    pub username: String,
    /// The relay identity fingerprint pinned earlier (hex); `None` pins on first use.
    pub pinned_relay_id: Option<String>,
    /// PEM certificates an `https://`/`wss://` relay's certificate must chain to (a private
    /// CA, or a development relay's self-signed certificate); `None` trusts the Mozilla roots.
    pub relay_ca_pem: Option<Vec<u8>>,
    /// Whether logins top up the relay's one-time prekeys in the background (default true;
    /// off for connections that only wait, such as load-test idlers).
    pub publish_prekeys: bool,
    /// One-time prekeys kept on the relay per mode (default [`crate::prekeys::TOP_UP`], 100;
    /// a mode is topped up when fewer than a quarter are left). Each is one handshake that
    /// needs no last-resort prekey.
    pub one_time_prekeys: u64,
}

impl ClientConfig {
    /// A configuration for `username` at `relay_url`, nothing pinned, the Mozilla roots.
    pub fn new(relay_url: &str, username: &str) -> Self {
        Self {
            relay_url: relay_url.to_owned(),
            username: username.to_owned(),
            pinned_relay_id: None,
            relay_ca_pem: None,
            publish_prekeys: true,
            one_time_prekeys: crate::prekeys::TOP_UP,
        }
    }

    pub(crate) fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        crate::tls::client_config(self.relay_ca_pem.as_deref())
    }
}
