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
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let e = client_config(Some(b"not a certificate")).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client_config(Some(bad)).is_err());
        assert!(client_config(None).is_ok());
    }
}
