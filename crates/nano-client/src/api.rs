//! The relay's HTTP API through one pooled HTTP client.

use std::sync::Arc;
use std::time::Duration;

use nano_crypto::{CryptoMode, Identity, OsRng, PublicBundle, SigContext};
use nano_proto::rest::{ErrorBody, RegisterRequest, RelayInfo, UserResponse, claim_content};
use nano_proto::{Bytes, Username};

use crate::error::{ClientError, Result};

/// A relay's HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// The API at `base` (`http://host:port` or `https://host:port`), trusting the Mozilla
    /// roots for HTTPS.
    pub fn new(base: &str) -> Result<Self> {
        Self::with_tls(base, &crate::tls::client_config(None)?)
    }

    /// The API at `base`, with `tls` deciding which certificates an `https://` relay may
    /// present (see [`crate::tls`]). Plain `http://` is refused off loopback
    /// ([`ClientError::InsecureTransport`]).
    pub fn with_tls(base: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::Invalid(format!(
                "the relay URL must start with http:// or https:// (got {base})"
            )));
        }
        crate::tls::require_tls_off_loopback(&base)?;
        // Pooled, but one idle connection at most, closed after a second: a client needs the
        // REST API at connect and for the odd bundle fetch, and the relay serves a bounded
        // number of API connections (`limits.max_http_connections`), so idle sockets of many
        // clients must not hold them (a thousand clients in one process, each keeping four
        // for five seconds, left new ones waiting past their connect timeout).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .https_only(base.starts_with("https://"))
            .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self { http, base })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        if let Some(reason) = tls_failure(e) {
            return ClientError::Tls {
                url: self.base.clone(),
                reason,
            };
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: if e.is_connect() {
                "connection refused".into()
            } else if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            },
        }
    }

    async fn error_of(resp: reqwest::Response) -> ClientError {
        match resp.json::<ErrorBody>().await {
            Ok(b) => ClientError::Relay {
                code: b.code,
                message: b.message,
            },
            Err(e) => ClientError::Protocol(format!("undecodable error body: {e}")),
        }
    }

    /// Sends `req` and decodes a JSON answer; `None` for 404 when `absent_ok`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        absent_ok: bool,
    ) -> Result<Option<T>> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if absent_ok && resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("{what}: {e}")))
    }

    async fn expect<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T> {
        self.call(req, what, false)
            .await?
            .ok_or_else(|| ClientError::Protocol(format!("{what}: no answer")))
    }

    /// `GET /v1/relay`.
    pub async fn relay_info(&self) -> Result<RelayInfo> {
        let req = self.http.get(format!("{}/v1/relay", self.base));
        self.expect(req, "relay info").await
    }

    /// `GET /v1/users/{name}`; `None` when there is no such user.
    pub async fn user(&self, name: &str) -> Result<Option<UserResponse>> {
        let req = self.http.get(format!("{}/v1/users/{name}", self.base));
        self.call(req, "user", true).await
    }

    /// A user's bundle, decoded and proof-checked, or [`ClientError::UnknownUser`].
    pub async fn bundle(&self, name: &str) -> Result<PublicBundle> {
        let u = self
            .user(name)
            .await?
            .ok_or_else(|| ClientError::UnknownUser(name.to_owned()))?;
        decode_bundle(u.bundle.as_slice())
    }

    /// `POST /v1/users`: claims `username` for `identity`, signing with its weakest key that the
    /// relay accepts (the cheapest proof; registration checks every mode's proof anyway).
    pub async fn register(
        &self,
        username: &Username,
        identity: &Identity,
        relay_floor: CryptoMode,
    ) -> Result<UserResponse> {
        let bundle = identity.public_bundle();
        let mode = bundle
            .modes()
            .filter(|m| *m >= relay_floor)
            .min()
            .ok_or_else(|| ClientError::NoCommonMode("the relay".into()))?;
        let sig = identity.sign(
            mode,
            SigContext::ProofOfPossession,
            &claim_content(username, bundle),
            &mut OsRng,
        )?;
        let req = RegisterRequest {
            username: username.clone(),
            bundle: Bytes(bundle.to_bytes()),
            crypto_mode: mode,
            signature: Bytes(sig.as_bytes().to_vec()),
        };
        let post = self.http.post(format!("{}/v1/users", self.base)).json(&req);
        self.expect(post, "registration").await
    }
}

/// Bundles already decoded in this process, by their exact bytes: checking a bundle's proofs
/// of possession costs a signature verification per mode, and many clients in one process (a
/// load generator, an app with several accounts) fetch the same bundles again and again.
const DECODED_BUNDLES: usize = 1024;

/// An identity bundle from its bytes, its proofs of possession verified (PROTOCOL.md §4), through
/// the cache of decoded bundles.
///
/// # Errors
/// A bundle that does not decode or whose proofs do not verify.
pub(crate) fn decode_bundle(bytes: &[u8]) -> Result<PublicBundle> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, PublicBundle>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(b) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(bytes) {
        return Ok(b.clone());
    }
    let b = PublicBundle::from_bytes(bytes)?;
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= DECODED_BUNDLES {
        c.clear();
    }
    c.insert(bytes.to_vec(), b.clone());
    Ok(b)
}

/// The TLS failure somewhere in `e`'s chain of causes (a certificate that does not verify),
/// as the innermost cause's words, if any.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    innermost.filter(|m| m.contains("certificate") || m.contains("TLS") || m.contains("tls"))
}
