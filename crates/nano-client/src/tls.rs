//! TLS to the relay (HTTPS for the API, WSS for the WebSocket): rustls on aws-lc-rs, no OpenSSL.
//!
//! Which certificates are trusted:
//! - by default, the Mozilla root store (`webpki-roots`): a relay with a certificate from a
//!   public CA needs nothing else;
//! - with a relay CA file (`nano-client init --relay-ca FILE`, [`crate::ClientConfig`]'s
//!   `relay_ca_pem`), only the certificates in that PEM file: a private CA, or a development
//!   relay's self-signed certificate (`DATA_DIR/tls-self-signed.crt`), trusted explicitly
//!   before the first connection rather than on first use.
//!
//! Either way the certificate must name the host in the URL, and the relay's identity pin
//! (`relay_id`) is checked on top of TLS as over plain connections.
//!
//! TLS is required except on loopback ([`require_tls_off_loopback`]), and only TLS 1.3 is
//! spoken: a login signs the connection's RFC 9266 `tls-exporter` value (PROTOCOL.md §12).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{ClientError, Result};

/// Most certificates read from a relay CA file.
const MAX_CA_CERTS: usize = 64;

/// A client TLS configuration trusting `ca_pem`'s certificates, or the Mozilla roots when
/// `None`. Fails with [`ClientError::Invalid`] if the PEM holds no certificate or a bad one.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Invalid(format!("relay CA file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Invalid(format!("relay CA file: {e}")))?;
                n += 1;
                if n > MAX_CA_CERTS {
                    return Err(ClientError::Invalid(format!(
                        "relay CA file: more than {MAX_CA_CERTS} certificates"
                    )));
                }
            }
            if n == 0 {
                return Err(ClientError::Invalid(
                    "relay CA file: no PEM certificate in it".into(),
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Refuses a plain `http://` or `ws://` URL whose host is not loopback (`localhost`,
/// 127.0.0.0/8, `::1`): off this machine, only TLS can bind a login to its connection.
///
/// # Errors
/// [`ClientError::InsecureTransport`] for such a URL; [`ClientError::Invalid`] for one that
/// does not parse or has another scheme.
pub fn require_tls_off_loopback(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ClientError::Invalid(format!("relay URL {url:?}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.to_canonical().is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" | "wss" => Ok(()),
        "http" | "ws" if loopback => Ok(()),
        "http" | "ws" => Err(ClientError::InsecureTransport {
            url: url.to_owned(),
        }),
        other => Err(ClientError::Invalid(format!(
            "relay URL {url:?}: scheme {other} is not http(s) or ws(s)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "ws://127.9.0.1:1/ws",
            "http://localhost:8080",
            "ws://LOCALHOST/",
            "http://[::1]:8080",
            "https://relay.example:8443",
            "wss://203.0.113.9/ws",
        ] {
            assert!(require_tls_off_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://relay.example:8080",
            "ws://203.0.113.9:9000/ws",
            "http://[2001:db8::1]:8080",
            "ws://localhost.evil.example/ws",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                matches!(
                    require_tls_off_loopback(bad),
                    Err(ClientError::InsecureTransport { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            require_tls_off_loopback("ftp://127.0.0.1/"),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            require_tls_off_loopback("not a url"),
            Err(ClientError::Invalid(_))
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let e = client_config(Some(b"not a certificate")).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client_config(Some(bad)).is_err());
        assert!(client_config(None).is_ok());
    }
}
