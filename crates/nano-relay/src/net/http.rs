//! The HTTP API on `api_port`: health, readiness, metrics, relay information, user registration,
//! lookup and key rotation, and the OpenAPI document.
//!
//! Bodies are parsed by hand, not by an extractor, so every malformed request gets the same JSON
//! error body with a stable `code` as everything else. Signature checks run on the crypto pool,
//! database work on blocking threads.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use nano_crypto::{CryptoError, SigContext};
use nano_proto::rest::{
    ErrorBody, RegisterRequest, RelayInfo, RotateKeysRequest, UserResponse, claim_content,
    rotation_content,
};
use nano_proto::{Bytes, ProtoError, Username};
use serde::Serialize;

use crate::clock::now_ms;
use crate::directory::UserEntry;
use crate::error::RelayError;
use crate::state::Shared;
use crate::storage::UserRecord;

/// Largest request body.
const MAX_BODY: usize = 256 * 1024;

/// The OpenAPI 3 description of this API.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

/// The API router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let request_timeout =
        std::time::Duration::from_secs(shared.config.limits.http_request_timeout_seconds);
    let error_metrics = shared.metrics.clone();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/relay", get(relay_info))
        .route("/v1/users", post(register))
        .route("/v1/users/{name}", get(user))
        .route("/v1/users/{name}/keys", put(rotate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read with our own limit so an oversized one gets the JSON error body.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(move |req, next| {
            within(request_timeout, error_metrics.clone(), req, next)
        }))
        .with_state(shared)
}

/// Runs a request (reading its body included) within `limit`, else answers `408
/// request_timeout` and closes the connection (the rest of the body was never read). Counts
/// the error code of every error answer in `nano_messenger_errors_total`, as the WebSocket
/// path does.
async fn within(
    limit: std::time::Duration,
    metrics: crate::telemetry::metrics::Metrics,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => timed_out(limit),
    };
    if let Some(code) = response.extensions().get::<nano_proto::ErrorCode>() {
        metrics.error(*code);
    }
    response
}

fn timed_out(limit: std::time::Duration) -> Response {
    RelayError::RequestTimeout {
        seconds: limit.as_secs(),
    }
    .into_response()
}

/// `r` marked as the last answer on its connection: the rest of the request body is never
/// read, so the connection cannot carry another request (a pooling client must not send its
/// next request into it).
fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Every error answer of the API: the JSON error body with the code and status of
/// [`RelayError::wire`], the code also attached to the response for the error metric.
impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        self.report();
        let wire = self.wire();
        let status =
            StatusCode::from_u16(wire.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json(
            status,
            &ErrorBody {
                code: wire.code,
                message: self.public_message(),
            },
        );
        r.extensions_mut().insert(wire.code);
        if self.closes_connection() {
            r = closing(r);
        }
        r
    }
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    (status, axum::Json(v)).into_response()
}

async fn not_found() -> Response {
    RelayError::NoRoute.into_response()
}

/// The `{name}` of a path, or the JSON error body when it is not UTF-8 (axum's own rejection
/// answers in plain text).
struct NameParam(Result<String, RelayError>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NameParam {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let name = Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(n)| n)
            .map_err(|_| {
                RelayError::from(ProtoError::InvalidField {
                    field: "name",
                    reason: "not a valid percent-encoded UTF-8 path segment".into(),
                })
            });
        Ok(Self(name))
    }
}

async fn method_not_allowed() -> Response {
    RelayError::MethodNotAllowed.into_response()
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(body: Body) -> Result<axum::body::Bytes, RelayError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| RelayError::BodyTooLarge { max: MAX_BODY })
}

async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Longest `/ready` waits for the storage probe before answering 503 (`storage timed out`).
/// Shorter than the 2 s a reconnect may wait for a connection, so a restarting database shows
/// as not ready while it is away instead of holding the probe until it is back (and within the
/// 1 s default of a Kubernetes readiness probe).
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let reason = if s.is_draining() {
        Some("draining")
    } else {
        let expected = crate::storage::schema::latest(match s.storage.backend() {
            "postgres" => crate::storage::schema::POSTGRES,
            _ => crate::storage::schema::SQLITE,
        });
        let probe = s.blocking(|s| s.storage.probe());
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(v)) if v == expected => None,
            Ok(Ok(_)) => Some("schema version differs from this build's"),
            Ok(Err(RelayError::Unreachable(_))) => Some("storage unreachable"),
            Ok(Err(e)) => {
                e.report();
                Some("storage not usable")
            }
            Err(_) => Some("storage timed out"),
        }
    };
    match reason {
        None => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Some(r) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready", "reason": r }),
        ),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut r = s.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn openapi() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn relay_info(State(s): State<Arc<Shared>>) -> Response {
    let floor = s.config.security.minimum_crypto_mode;
    let info = RelayInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        relay_id: s.relay_id.to_hex(),
        identity: Bytes(s.identity.public_bundle().to_bytes()),
        websocket_url: s.ws_url.clone(),
        modes: floor.and_stronger().collect(),
        minimum_crypto_mode: floor,
        allow_anonymous_send: s.config.security.allow_anonymous_send,
        allow_opaque_payloads: s.config.security.allow_opaque_payloads,
        max_message_bytes: s.config.limits.max_message_bytes,
        acceleration: s.acceleration,
    };
    json(StatusCode::OK, &info)
}

fn user_response(r: &UserRecord) -> Result<UserResponse, RelayError> {
    Ok(UserResponse {
        username: Username::new(&r.username)?,
        bundle: Bytes(r.bundle.clone()),
        fingerprint: hex::encode(r.fingerprint),
        min_mode: r.min_mode,
        key_version: r.key_version,
    })
}

async fn register(State(s): State<Arc<Shared>>, body: Body) -> Result<Response, RelayError> {
    let req: RegisterRequest = nano_proto::rest::from_body(&read_body(body).await?)?;
    s.check_floor(req.crypto_mode)?;
    let shared = Arc::clone(&s);
    let bundle = s
        .crypto
        .run(move || -> Result<_, RelayError> {
            let started = std::time::Instant::now();
            // Decoding checks every key and every mode's proof of possession.
            let bundle = req.bundle()?;
            // A bundle accepting less than the relay allows would invite senders below it.
            shared.check_floor(bundle.min_mode())?;
            let sig = req.signature()?;
            let key = bundle
                .verifying_key(req.crypto_mode)
                .ok_or(CryptoError::ModeNotAllowed {
                    mode: req.crypto_mode,
                    floor: bundle.min_mode(),
                })?;
            key.verify(
                SigContext::ProofOfPossession,
                &claim_content(&req.username, &bundle),
                &sig,
            )?;
            shared
                .metrics
                .crypto_op("verify", req.crypto_mode, started.elapsed());
            Ok((req.username, bundle))
        })
        .await??;
    let (name, bundle) = bundle;
    let record = s
        .blocking(move |s| s.directory.register(name.as_str(), &bundle, now_ms()))
        .await?;
    tracing::info!("user registered");
    let resp = user_response(&record)?;
    Ok(json(StatusCode::CREATED, &resp))
}

async fn lookup(s: &Arc<Shared>, name: &str) -> Result<Arc<UserEntry>, RelayError> {
    let name = Username::new(name)?;
    s.user(name.as_str()).await?.ok_or(RelayError::NotFound)
}

async fn user(State(s): State<Arc<Shared>>, name: NameParam) -> Result<Response, RelayError> {
    let name = name.0?;
    let e = lookup(&s, &name).await?;
    let resp = user_response(&e.record)?;
    Ok(json(StatusCode::OK, &resp))
}

async fn rotate(
    State(s): State<Arc<Shared>>,
    name: NameParam,
    body: Body,
) -> Result<Response, RelayError> {
    let name = name.0?;
    let req: RotateKeysRequest = nano_proto::rest::from_body(&read_body(body).await?)?;
    s.check_floor(req.crypto_mode)?;
    let current = s.decoded(lookup(&s, &name).await?).await?;
    // The canonical (registered) form of the name in the path.
    let name = current.record.username.clone();
    let version = current.record.key_version;
    if req.key_version != version {
        // A statement for another state of this name: spent, replayed, or raced.
        return Err(RelayError::Conflict);
    }
    let username = Username::new(&name)?;
    let shared = Arc::clone(&s);
    let cur = Arc::clone(&current);
    let new = s
        .crypto
        .run(move || -> Result<_, RelayError> {
            let new = req.bundle()?;
            shared.check_floor(new.min_mode())?;
            let content =
                rotation_content(&username, version, &cur.fingerprint(), &new.fingerprint());
            // Signed by the *current* key of that mode, and by the *new* one: the new
            // keys consent to this name.
            let mode = req.crypto_mode;
            for (bundle, sig) in [
                (cur.bundle()?, req.signature()?),
                (&new, req.new_signature()?),
            ] {
                let key = bundle
                    .verifying_key(mode)
                    .ok_or(CryptoError::ModeNotAllowed {
                        mode,
                        floor: bundle.min_mode(),
                    })?;
                let started = std::time::Instant::now();
                key.verify(SigContext::KeyRotation, &content, &sig)?;
                shared.metrics.crypto_op("verify", mode, started.elapsed());
            }
            Ok(new)
        })
        .await??;
    let fp = current.fingerprint();
    let resp = user_response(&UserRecord {
        id: current.record.id,
        username: name.clone(),
        bundle: new.to_bytes(),
        fingerprint: new.fingerprint().0,
        min_mode: new.min_mode(),
        key_version: version + 1,
    })?;
    s.blocking(move |s| s.directory.rotate(&name, &fp, version, &new, now_ms()))
        .await?;
    tracing::info!("keys rotated");
    // Answered from the bundle just stored: no second read (and proof check) of it.
    Ok(json(StatusCode::OK, &resp))
}
