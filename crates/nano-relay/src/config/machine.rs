//! Checks of a validated configuration against this machine, for what `validate()` cannot see
//! from the text alone: TLS files that are missing, unreadable or do not match, a data
//! directory that is not a directory, and a file-descriptor limit below what the connection
//! limits need. `nano-relay validate-config` and startup both run them, so a configuration that
//! validates is one the relay can honour here.

use std::path::Path;

use super::RelayConfig;
use crate::error::StartupError;

/// File descriptors the relay needs besides its connections (database, logs, listeners,
/// runtime), a generous allowance.
const SPARE_DESCRIPTORS: u64 = 256;

fn invalid(key: &'static str, reason: impl Into<String>) -> StartupError {
    StartupError::ConfigInvalid {
        key,
        reason: reason.into(),
    }
}

/// Runs every check; the first failure names its key. May raise the soft file-descriptor
/// limit towards the hard one (it never lowers it).
pub fn check(cfg: &RelayConfig) -> Result<(), StartupError> {
    check_data_dir(&cfg.storage.data_dir)?;
    check_tls(cfg)?;
    check_descriptors(cfg)
}

fn check_data_dir(dir: &Path) -> Result<(), StartupError> {
    // The nearest existing ancestor must be a directory (the relay creates the rest).
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.exists() {
            return if d.is_dir() {
                Ok(())
            } else {
                Err(invalid(
                    "storage.data_dir",
                    format!("{} exists and is not a directory", d.display()),
                ))
            };
        }
        p = d.parent();
    }
    Ok(())
}

fn check_tls(cfg: &RelayConfig) -> Result<(), StartupError> {
    let t = &cfg.tls;
    if !t.enabled || t.self_signed {
        return Ok(());
    }
    for (key, path) in [
        ("tls.cert_path", &t.cert_path),
        ("tls.key_path", &t.key_path),
    ] {
        if let Some(p) = path {
            std::fs::metadata(p)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", p.display())))?;
        }
    }
    // Parses both files and checks that the key is the certificate's.
    crate::net::tls::server_config(t, &cfg.storage.data_dir)
        .map(|_| ())
        .map_err(|e| invalid("tls.cert_path", e.to_string()))
}

fn check_descriptors(cfg: &RelayConfig) -> Result<(), StartupError> {
    let needed = cfg.server.max_connections as u64
        + cfg.limits.max_http_connections as u64
        + u64::from(cfg.storage.pool_size)
        + SPARE_DESCRIPTORS;
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(invalid(
            "server.max_connections",
            format!(
                "{} WebSocket and {} API connections need about {needed} file descriptors, but \
                 the hard limit is {hard} (raise it: ulimit -n, LimitNOFILE=, or lower the limits)",
                cfg.server.max_connections, cfg.limits.max_http_connections
            ),
        ));
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, needed, hard).map_err(|e| {
        invalid(
            "server.max_connections",
            format!("cannot raise the file-descriptor limit to {needed}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_that_is_a_file_is_refused() {
        let f = std::env::temp_dir().join(format!("nano-relay-not-a-dir-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        let e = check_data_dir(&f.join("sub")).unwrap_err();
        std::fs::remove_file(&f).unwrap();
        assert!(matches!(
            e,
            StartupError::ConfigInvalid {
                key: "storage.data_dir",
                ..
            }
        ));
        assert!(check_data_dir(Path::new("/nonexistent-root-dir/a/b")).is_ok());
    }

    #[test]
    fn more_connections_than_the_hard_limit_allows_are_refused() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let mut cfg = RelayConfig::default();
        cfg.server.max_connections = usize::try_from(hard).unwrap_or(usize::MAX / 2);
        let e = check_descriptors(&cfg).unwrap_err();
        assert!(matches!(
            e,
            StartupError::ConfigInvalid {
                key: "server.max_connections",
                ..
            }
        ));
        assert!(check_descriptors(&RelayConfig::default()).is_ok());
    }

    #[test]
    fn missing_or_mismatched_tls_files_are_refused() {
        let mut cfg = RelayConfig::default();
        cfg.tls.enabled = true;
        cfg.tls.cert_path = Some("/nonexistent/cert.pem".into());
        cfg.tls.key_path = Some("/nonexistent/key.pem".into());
        let e = check_tls(&cfg).unwrap_err();
        assert!(
            matches!(
                e,
                StartupError::ConfigInvalid {
                    key: "tls.cert_path",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
