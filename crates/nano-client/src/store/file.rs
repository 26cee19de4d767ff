//! [`FileStore`]: session state as encrypted files under a directory (the CLI's home):
//! `prekeys/{mode}`, `sessions/{mode}/{contact}` and `received/{message id}`, each (PROTOCOL.md
//! §13)
//!
//! ```text
//! key  = HKDF-SHA256(salt = "", IKM = identity secret bytes, info = "nano-messenger/v1 state-key")
//! file = "NANOST" ‖ 0x01 ‖ nonce (12) ‖ ChaCha20-Poly1305(key, nonce, aad = "NANOST" ‖ 0x01 ‖ name, state)
//! ```
//!
//! `name` is the file's path under the directory (`sessions/hybrid/bob`), so a file moved to
//! another contact's or mode's place does not open. Files are 0600 and replaced atomically
//! (a temporary file, fsync, rename, fsync of the directory).

use std::path::{Path, PathBuf};

use nano_crypto::kdf::{KdfLabel, derive};
use nano_crypto::session::PrekeySecrets;
use nano_crypto::{AeadId, AeadKey, CryptoMode, Identity, OsRng};
use nano_proto::MessageId;
use rand_core::RngCore;
use zeroize::Zeroizing;

use super::{
    PrekeyStore, ReceivedStore, SessionRecord, SessionStore, Store, StoreLock, decode_sessions,
    encode_sessions,
};
use crate::error::{ClientError, Result, io};

const MAGIC: &[u8; 7] = b"NANOST\x01";

/// Encrypted session state under a directory, keyed by the identity.
pub struct FileStore {
    dir: PathBuf,
    key: AeadKey,
    lock: std::sync::Mutex<()>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// The store under `dir` (created 0700 when first written), encrypted with a key derived
    /// from `identity`'s secret.
    ///
    /// # Errors
    /// Key derivation failures (none in practice).
    pub fn new(dir: &Path, identity: &Identity) -> Result<Self> {
        let secret = identity.to_secret_bytes();
        let key = derive::<32>(KdfLabel::StateKey, &[], &secret, &[])?;
        Ok(Self {
            dir: dir.to_owned(),
            key: AeadKey::new(AeadId::ChaCha20Poly1305, &key)?,
            lock: std::sync::Mutex::new(()),
        })
    }

    fn aad(name: &str) -> Vec<u8> {
        let mut aad = MAGIC.to_vec();
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let bad = || {
            ClientError::Invalid(format!(
                "{} is damaged or not this identity's",
                path.display()
            ))
        };
        if bytes.len() < MAGIC.len() + 12 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad());
        }
        let nonce: [u8; 12] = bytes[MAGIC.len()..MAGIC.len() + 12]
            .try_into()
            .map_err(|_| bad())?;
        let plain = self
            .key
            .open(&nonce, &Self::aad(name), &bytes[MAGIC.len() + 12..])
            .map_err(|_| bad())?;
        Ok(Some(Zeroizing::new(plain)))
    }

    fn write(&self, name: &str, state: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let parent = path.parent().unwrap_or(&self.dir);
        create_private_dir(parent)?;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&self.key.seal(&nonce, &Self::aad(name), state)?);
        crate::keystore::write_private(&path, &file)?;
        // The rename is durable once the directory is.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(parent, e))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))
}

fn prekeys_name(mode: CryptoMode) -> String {
    format!("prekeys/{mode}")
}

/// Usernames are `[a-z0-9_.-]` starting with a letter or digit: safe as a file name.
fn sessions_name(peer: &str, mode: CryptoMode) -> String {
    format!("sessions/{mode}/{peer}")
}

impl PrekeyStore for FileStore {
    fn load_prekeys(&self, mode: CryptoMode) -> Result<Option<PrekeySecrets>> {
        self.read(&prekeys_name(mode))?
            .map(|b| {
                PrekeySecrets::from_bytes(&b)
                    .map_err(|e| ClientError::Invalid(format!("stored prekeys: {e}")))
            })
            .transpose()
    }

    fn store_prekeys(&self, prekeys: &PrekeySecrets) -> Result<()> {
        self.write(&prekeys_name(prekeys.mode()), &prekeys.to_bytes())
    }
}

impl SessionStore for FileStore {
    fn load_sessions(&self, peer: &str, mode: CryptoMode) -> Result<Vec<SessionRecord>> {
        match self.read(&sessions_name(peer, mode))? {
            Some(b) => decode_sessions(&b),
            None => Ok(Vec::new()),
        }
    }

    fn store_sessions(
        &self,
        peer: &str,
        mode: CryptoMode,
        records: &[SessionRecord],
    ) -> Result<()> {
        let name = sessions_name(peer, mode);
        if records.is_empty() {
            self.remove(&name)
        } else {
            self.write(&name, &encode_sessions(records))
        }
    }
}

/// `received/{id in hex}`, removed when acknowledged.
fn received_name(id: &MessageId) -> String {
    format!("received/{}", id.to_hex())
}

impl ReceivedStore for FileStore {
    fn save_received(&self, id: &MessageId, opened: &[u8]) -> Result<()> {
        self.write(&received_name(id), opened)
    }

    fn load_received(&self, id: &MessageId) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.read(&received_name(id))
    }

    fn remove_received(&self, ids: &[MessageId]) -> Result<()> {
        ids.iter()
            .try_for_each(|id| self.remove(&received_name(id)))
    }
}

impl Store for FileStore {
    /// The in-process lock, then an exclusive `flock` of `lock` in the directory: two CLI
    /// processes on one home (a `receive --follow` and a `send`) take turns.
    fn lock(&self) -> Result<StoreLock<'_>> {
        // In-process first: threads queue on the mutex, not on the file.
        let held = StoreLock::hold(&self.lock);
        create_private_dir(&self.dir)?;
        let path = self.dir.join("lock");
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io(&path, e))?
        };
        file.lock().map_err(|e| io(&path, e))?;
        Ok(held.with_file(file))
    }
}
