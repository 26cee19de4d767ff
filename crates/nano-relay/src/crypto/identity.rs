//! The relay's long-term identity: generated on first start, kept in the data directory.
//!
//! The identity holds keys for every mode, so the relay can sign a `key_exchange` key in the mode
//! the client asked for. Its fingerprint is the relay id clients pin and sign into `auth`.

use std::io::Write;
use std::path::{Path, PathBuf};

use nano_crypto::{CryptoMode, Identity, OsRng};

use crate::error::StartupError;

/// File name of the identity inside the data directory.
pub(crate) const IDENTITY_FILE: &str = "relay-identity.key";

fn io(path: &Path, e: std::io::Error) -> StartupError {
    StartupError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Loads `data_dir/relay-identity.key`, or creates it (mode 0600) when absent.
pub(crate) fn load_or_create(data_dir: &Path) -> Result<Identity, StartupError> {
    let path: PathBuf = data_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            Identity::from_secret_bytes(&bytes, &mut OsRng).map_err(|e| StartupError::Io {
                path: path.display().to_string(),
                reason: format!("not a valid relay identity ({e})"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
            let id = Identity::generate(CryptoMode::Classical, &mut OsRng)
                .map_err(|e| StartupError::Service(e.into()))?;
            write_private(&path, &id.to_secret_bytes())?;
            tracing::info!(fingerprint = %id.fingerprint().to_hex(), "generated a new relay identity");
            Ok(id)
        }
        Err(e) => Err(io(&path, e)),
    }
}

/// Writes `bytes` to a new file readable by the owner only; never replaces an existing file.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StartupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}
