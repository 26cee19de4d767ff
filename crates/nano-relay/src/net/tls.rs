//! TLS for the WebSocket port (`[tls]`): certificate files, or a self-signed certificate for
//! `localhost` generated once and kept in the data directory (development).
//!
//! rustls with the aws-lc-rs provider and its default key-exchange groups, which put the hybrid
//! post-quantum X25519MLKEM768 first: the transport is as harvest-resistant as the payload.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::crypto::identity::write_private;
use crate::error::StartupError;

/// Self-signed certificate file in the data directory.
pub(crate) const SELF_SIGNED_CERT: &str = "tls-self-signed.crt";
/// Its private key.
pub(crate) const SELF_SIGNED_KEY: &str = "tls-self-signed.key";

fn tls_err(what: &str, path: &Path, e: impl std::fmt::Display) -> StartupError {
    StartupError::Tls(format!("{what} {}: {e}", path.display()))
}

/// The rustls server configuration `[tls]` describes, or `None` when TLS is off.
pub(crate) fn server_config(
    cfg: &TlsConfig,
    data_dir: &Path,
) -> Result<Option<Arc<ServerConfig>>, StartupError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let (cert_path, key_path) = if cfg.self_signed {
        ensure_self_signed(data_dir)?
    } else {
        match (&cfg.cert_path, &cfg.key_path) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                return Err(StartupError::Tls(
                    "tls.cert_path and tls.key_path are required".into(),
                ));
            }
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| tls_err("cannot read certificate", &cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("invalid certificate", &cert_path, e))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate in", &cert_path, "empty"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| tls_err("cannot read private key", &key_path, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        // TLS 1.3 only: logins are bound to its exporter (RFC 9266 `tls-exporter`).
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| StartupError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartupError::Tls(format!("certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Creates the self-signed certificate for `localhost` on first use; returns (cert, key) paths.
fn ensure_self_signed(
    data_dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), StartupError> {
    let cert = data_dir.join(SELF_SIGNED_CERT);
    let key = data_dir.join(SELF_SIGNED_KEY);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| tls_err("cannot create", data_dir, e))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| StartupError::Tls(format!("cannot generate a certificate: {e}")))?;
    // A leftover half (one file without the other) is replaced.
    let _ = std::fs::remove_file(&key);
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem()).map_err(|e| tls_err("cannot write", &cert, e))?;
    tracing::info!(path = %cert.display(), "generated a self-signed TLS certificate for localhost");
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the relay builds, not the library's defaults: the hybrid post-quantum group first
    /// and `http/1.1` for the upgrade (TLS 1.3 with its exporter is exercised end to end by the
    /// client's login tests).
    #[test]
    fn the_relay_config_puts_the_hybrid_group_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig {
            enabled: true,
            self_signed: true,
            ..TlsConfig::default()
        };
        let config = server_config(&cfg, dir.path()).unwrap().unwrap();
        let first = config.crypto_provider().kx_groups.first().map(|g| g.name());
        assert_eq!(first, Some(rustls::NamedGroup::X25519MLKEM768));
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("nano-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = TlsConfig {
            enabled: true,
            self_signed: true,
            ..TlsConfig::default()
        };
        assert!(server_config(&cfg, &dir).unwrap().is_some());
        let first = std::fs::read(dir.join(SELF_SIGNED_CERT)).unwrap();
        assert!(server_config(&cfg, &dir).unwrap().is_some());
        assert_eq!(first, std::fs::read(dir.join(SELF_SIGNED_CERT)).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_are_a_clear_error() {
        let cfg = TlsConfig {
            enabled: true,
            self_signed: false,
            cert_path: Some("/nonexistent/cert.pem".into()),
            key_path: Some("/nonexistent/key.pem".into()),
        };
        let err = server_config(&cfg, Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn disabled_means_none() {
        assert!(
            server_config(&TlsConfig::default(), Path::new("/tmp"))
                .unwrap()
                .is_none()
        );
    }
}
