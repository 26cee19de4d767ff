#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A login cannot be relayed (PROTOCOL.md §12). A party in the middle of the WebSocket — here a
//! proxy holding a certificate the client trusts, which forwards every byte to the real relay
//! over its own TLS connection — passes the relay's real `challenge` through, but that
//! challenge is signed over the proxy's TLS channel, not the client's: the client refuses it
//! and signs nothing. Without the binding the client would sign an `auth` the proxy could use.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Relay, WAIT};
use nano_client::{Client, ClientConfig, ClientError, ModeChoice, TrustAll};
use nano_crypto::{CryptoMode, Identity, OsRng};
use nano_testkit::{Config, toml_str};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The party in the middle.
#[derive(Clone, Copy)]
enum Middle {
    /// Terminates the client's TLS with a certificate the client trusts (the relay's own: the
    /// worst case) and speaks TLS of its own to the relay.
    TlsBothSides,
    /// A TLS-terminating reverse proxy: TLS to the client (its own certificate, trusted), plain
    /// to a relay without TLS on loopback.
    TerminatesTls,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls13_server(cert_pem: &[u8], key_pem: &[u8]) -> TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(server))
}

fn tls13_client(ca_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(client))
}

/// Accepts clients over TLS (`acceptor`) and pipes each to the relay's WebSocket port, over a
/// TLS connection of its own when `upstream_tls` is given, else plain.
async fn proxy(
    listener: TcpListener,
    relay_port: u16,
    acceptor: TlsAcceptor,
    upstream_tls: Option<TlsConnector>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let (acceptor, upstream_tls) = (acceptor.clone(), upstream_tls.clone());
        tokio::spawn(async move {
            let Ok(mut down) = acceptor.accept(client).await else {
                return;
            };
            let up = TcpStream::connect(("127.0.0.1", relay_port)).await.unwrap();
            match upstream_tls {
                Some(c) => {
                    let name = ServerName::try_from("localhost").unwrap();
                    let mut up = c.connect(name, up).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
                None => {
                    let mut up = up;
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            }
        });
    }
}

/// A relay whose `/v1/relay` names the proxy as its WebSocket (as a party in the middle of the
/// API would rewrite it, or as an operator behind a reverse proxy would configure it); alice
/// logs in through the proxy and sends: the send must fail with `RelayNotAuthenticated` saying
/// `why`, no `auth` reaches the relay, and a later send says the same.
async fn a_login_through_a_proxy_is_refused(middle: Middle, why: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let public = format!("wss://localhost:{proxy_port}");
    let cfg = |relay_port: u16| {
        Config::minimal()
            .set("server", "websocket_port", relay_port)
            .set("server", "public_websocket_url", toml_str(&public))
    };
    let (relay, ca, api) = match middle {
        Middle::TlsBothSides => {
            let (relay, relay_port) = Relay::start_on_a_free_ws_port(|port| {
                cfg(port)
                    .set("tls", "enabled", true)
                    .set("tls", "self_signed", true)
            });
            let data = relay.dir().join("data");
            let cert = std::fs::read(data.join("tls-self-signed.crt")).unwrap();
            let key = std::fs::read(data.join("tls-self-signed.key")).unwrap();
            let acceptor = tls13_server(&cert, &key);
            let upstream = tls13_client(&cert);
            tokio::spawn(proxy(listener, relay_port, acceptor, Some(upstream)));
            let api = relay.api.replace("127.0.0.1", "localhost");
            (relay, cert, api)
        }
        Middle::TerminatesTls => {
            let (relay, relay_port) = Relay::start_on_a_free_ws_port(cfg);
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let cert = made.cert.pem().into_bytes();
            let acceptor = tls13_server(&cert, made.signing_key.serialize_pem().as_bytes());
            tokio::spawn(proxy(listener, relay_port, acceptor, None));
            let api = relay.api.clone();
            (relay, cert, api)
        }
    };
    let config = |name: &str| ClientConfig {
        relay_ca_pem: Some(ca.clone()),
        ..ClientConfig::new(&api, name)
    };
    let alice = Arc::new(Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap());
    let bob = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
    for (name, id) in [("alice", &*alice), ("bob", &bob)] {
        timeout(WAIT, Client::register_only(&config(name), id))
            .await
            .unwrap()
            .unwrap();
    }
    let (a, _rx, info) = timeout(
        WAIT,
        Client::connect(config("alice"), alice, Arc::new(TrustAll)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(info.websocket_url, public);
    for attempt in ["first", "second"] {
        let r = timeout(
            Duration::from_secs(20),
            a.send("bob", b"through the proxy", ModeChoice::Auto),
        )
        .await
        .expect("the send neither completed nor failed");
        match r {
            Err(ClientError::RelayNotAuthenticated(reason)) => {
                assert!(reason.contains(why), "{attempt} send: {reason}");
            }
            Ok(receipt) => panic!("a relayed login succeeded: {receipt:?}"),
            Err(e) => panic!("{attempt} send: expected RelayNotAuthenticated, got {e:?}"),
        }
    }
    // Had the client signed, the relay would have refused that auth on the proxy's connection.
    let metrics = metrics(&api, &ca).await;
    drop(relay);
    let auth_failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nano_messenger_errors_total{code=\"auth_failed\"} "))
        .map(|v| v.trim().parse::<f64>().unwrap());
    assert_eq!(auth_failed, Some(0.0), "an auth reached the relay");
}

async fn metrics(api: &str, ca: &[u8]) -> String {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .build()
        .unwrap();
    client
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tls_proxy_with_a_trusted_certificate_cannot_relay_a_login() {
    a_login_through_a_proxy_is_refused(Middle::TlsBothSides, "does not verify").await;
}

#[tokio::test]
async fn a_proxy_that_terminates_tls_is_detected() {
    a_login_through_a_proxy_is_refused(Middle::TerminatesTls, "different kind of channel").await;
}
