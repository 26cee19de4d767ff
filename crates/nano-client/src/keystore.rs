//! The home directory: the encrypted identity, the profile, pinned contacts and seen message ids.
//!
//! `identity.nks` (0600) holds the identity's secret bytes sealed with a key derived from the
//! passphrase (`docs/PROTOCOL.md` §13):
//!
//! ```text
//! header = "NANOKS" ‖ version 0x01 ‖ m_cost KiB (4) ‖ t_cost (4) ‖ lanes (4) ‖ salt (16) ‖ nonce (12)
//! pw     = Argon2id(passphrase, salt, m_cost, t_cost, lanes) → 32 bytes
//! key    = HKDF-SHA256(salt = "", pw, "nano-messenger/v1 keystore-key" ‖ header)
//! file   = header ‖ ChaCha20-Poly1305(key, nonce, aad = header, identity secret bytes)
//! ```
//!
//! The other files are JSON, not secret, also created 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nano_crypto::kdf::{KdfLabel, derive};
use nano_crypto::{AeadId, AeadKey, Identity, OsRng};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result, io};

const MAGIC: &[u8; 7] = b"NANOKS\x01";
const HEADER_LEN: usize = 7 + 12 + 16 + 12;
/// Argon2id memory (KiB), passes and lanes for new keystores.
pub const ARGON2_PARAMS: (u32, u32, u32) = (65_536, 3, 1);
/// Bounds on parameters read from a file, so a hostile file cannot demand unbounded memory.
const MAX_M_COST: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;

/// What a user's home holds besides the secret keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The username.
    pub username: String,
    /// The weakest mode this user accepts.
    pub min_mode: nano_crypto::CryptoMode,
    /// The relay's HTTP API URL.
    pub relay: String,
    /// The relay identity fingerprint pinned on first contact (hex).
    #[serde(default)]
    pub relay_id: Option<String>,
    /// PEM certificates the relay's TLS certificate must chain to (`init --relay-ca`); absent,
    /// the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_ca_pem: Option<String>,
    /// Whether registration succeeded.
    #[serde(default)]
    pub registered: bool,
    /// The identity's fingerprint (hex), so `whoami` needs no passphrase.
    pub fingerprint: String,
}

/// The home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

fn argon2_key(
    passphrase: &[u8],
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| ClientError::Invalid(format!("keystore parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| ClientError::Invalid(format!("keystore key derivation: {e}")))?;
    Ok(out)
}

fn aead(pw: &[u8; 32], header: &[u8]) -> Result<AeadKey> {
    let key = derive::<32>(KdfLabel::KeystoreKey, &[], pw, &[header])?;
    Ok(AeadKey::new(AeadId::ChaCha20Poly1305, &key)?)
}

/// Seals `secret` under `passphrase` with `params`.
pub fn seal_keystore(secret: &[u8], passphrase: &[u8], params: (u32, u32, u32)) -> Result<Vec<u8>> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&params.0.to_be_bytes());
    header.extend_from_slice(&params.1.to_be_bytes());
    header.extend_from_slice(&params.2.to_be_bytes());
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);
    let pw = argon2_key(passphrase, &salt, params)?;
    let sealed = aead(&pw, &header)?.seal(&nonce, &header, secret)?;
    header.extend_from_slice(&sealed);
    Ok(header)
}

/// Opens a keystore file's bytes with `passphrase`.
pub fn open_keystore(bytes: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = || ClientError::Invalid("the keystore file is damaged or not a keystore".into());
    if bytes.len() < HEADER_LEN || &bytes[..7] != MAGIC {
        return Err(bad());
    }
    let word = |i: usize| -> Result<u32> {
        let b: [u8; 4] = bytes[i..i + 4].try_into().map_err(|_| bad())?;
        Ok(u32::from_be_bytes(b))
    };
    let params = (word(7)?, word(11)?, word(15)?);
    if params.0 > MAX_M_COST || params.1 > MAX_T_COST || params.2 == 0 || params.2 > 16 {
        return Err(bad());
    }
    let salt = &bytes[19..35];
    let nonce: [u8; 12] = bytes[35..47].try_into().map_err(|_| bad())?;
    let header = &bytes[..HEADER_LEN];
    let pw = argon2_key(passphrase, salt, params)?;
    let plain = aead(&pw, header)?
        .open(&nonce, header, &bytes[HEADER_LEN..])
        .map_err(|_| ClientError::WrongPassphrase)?;
    Ok(Zeroizing::new(plain))
}

/// Writes `bytes` to `path` with mode 0600, atomically (write a temporary file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

impl Home {
    /// The home at `dir` (not necessarily existing yet).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `--home`, else `NANO_HOME`, else the platform data directory's `nano-messenger`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self> {
        if let Some(d) = flag {
            return Ok(Self::new(d));
        }
        if let Some(d) = std::env::var_os("NANO_HOME") {
            return Ok(Self::new(PathBuf::from(d)));
        }
        dirs::data_dir()
            .map(|d| Self::new(d.join("nano-messenger")))
            .ok_or_else(|| {
                ClientError::Invalid("no home directory: pass --home or set NANO_HOME".into())
            })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether an identity exists here.
    pub fn exists(&self) -> bool {
        self.path("identity.nks").exists()
    }

    /// Creates the home with a new identity sealed under `passphrase`.
    pub fn create(&self, identity: &Identity, profile: &Profile, passphrase: &[u8]) -> Result<()> {
        if self.exists() {
            return Err(ClientError::HomeExists(self.dir.display().to_string()));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let _ = std::fs::set_permissions(
            &self.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        let sealed = seal_keystore(&identity.to_secret_bytes(), passphrase, ARGON2_PARAMS)?;
        self.save_profile(profile)?;
        write_private(&self.path("identity.nks"), &sealed)
    }

    /// Opens the identity with `passphrase`.
    pub fn identity(&self, passphrase: &[u8]) -> Result<Identity> {
        if !self.exists() {
            return Err(ClientError::NoHome(self.dir.display().to_string()));
        }
        let path = self.path("identity.nks");
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let secret = open_keystore(&bytes, passphrase)?;
        Ok(Identity::from_secret_bytes(&secret, &mut OsRng)?)
    }

    fn load_json<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io(&path, format!("not valid: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn save_json<T: Serialize>(&self, name: &str, v: &T) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(v).map_err(|e| ClientError::Invalid(e.to_string()))?;
        write_private(&self.path(name), &bytes)
    }

    /// The profile.
    pub fn profile(&self) -> Result<Profile> {
        if !self.exists() {
            return Err(ClientError::NoHome(self.dir.display().to_string()));
        }
        let p: Option<Profile> = self.load_json("profile.json")?;
        p.ok_or_else(|| ClientError::NoHome(self.dir.display().to_string()))
    }

    /// Saves the profile.
    pub fn save_profile(&self, p: &Profile) -> Result<()> {
        self.save_json("profile.json", p)
    }

    /// Pinned contacts.
    pub fn contacts(&self) -> Result<crate::contacts::Contacts> {
        self.load_json("contacts.json")
    }

    /// Saves the contacts.
    pub fn save_contacts(&self, c: &crate::contacts::Contacts) -> Result<()> {
        self.save_json("contacts.json", c)
    }

    /// Ids of messages already shown (newest last, bounded).
    pub fn seen(&self) -> Result<crate::contacts::Seen> {
        self.load_json("seen.json")
    }

    /// Saves the seen ids.
    pub fn save_seen(&self, s: &crate::contacts::Seen) -> Result<()> {
        self.save_json("seen.json", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: (u32, u32, u32) = (256, 1, 1);

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let sealed = seal_keystore(b"secret keys", b"pass", FAST).unwrap();
        assert_eq!(&*open_keystore(&sealed, b"pass").unwrap(), b"secret keys");
        assert!(matches!(
            open_keystore(&sealed, b"Pass"),
            Err(ClientError::WrongPassphrase)
        ));
    }

    #[test]
    fn every_byte_is_checked() {
        // Magic and version, the Argon2 parameters (a flipped bit gives parameters that are
        // refused, or derive another key), salt, nonce, ciphertext and tag.
        let sealed = seal_keystore(b"secret keys", b"pass", FAST).unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(open_keystore(&t, b"pass").is_err(), "byte {i}");
        }
    }

    #[test]
    fn hostile_parameters_and_truncations_are_refused() {
        let mut sealed = seal_keystore(b"k", b"pass", FAST).unwrap();
        sealed[7..11].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            open_keystore(&sealed, b"pass"),
            Err(ClientError::Invalid(_))
        ));
        for n in 0..HEADER_LEN {
            assert!(open_keystore(&sealed[..n], b"pass").is_err());
        }
        assert!(open_keystore(b"not a keystore at all, no, not at all, nope....", b"p").is_err());
    }
}
