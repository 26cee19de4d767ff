//! X-Wing (draft-connolly-cfrg-xwing-kem-06 and later): ML-KEM-768 + X25519 with a SHA3-256
//! combiner, built from the fastest ML-KEM-768 and X25519 measured here.
//!
//! The decapsulation key is a 32-byte seed; `SHAKE256(seed, 96)` expands to the ML-KEM seed
//! (`d ‖ z`, 64 bytes) and the X25519 secret (32 bytes). The expansion runs once, at load, and the
//! expanded keys are kept (in secure memory), so decapsulation does not re-derive them.
//! `ss = SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ "\.//^\")`. An all-zero X25519 output is rejected
//! (RFC 7748 §6.1 permits the check); honest peers never produce one.

use sha3::{Digest, Sha3_256};
use shake::{ExtendableOutput, Shake256, Update, XofReader};
use zeroize::Zeroize;

use super::mlkem::{MlKem768KeyPair, MlKem768PublicKey};
use super::x25519::{self, X25519KeyPair};
use crate::error::Result;
use crate::secret::SharedSecret;
use crate::secure_mem::SecureBox;

/// Decapsulation key (seed) length.
pub const SEED_LEN: usize = 32;
/// Encapsulation key length: ML-KEM-768 key ‖ X25519 key.
pub const PUBLIC_KEY_LEN: usize = 1184 + 32;
/// Ciphertext length: ML-KEM-768 ciphertext ‖ X25519 ephemeral key.
pub const CIPHERTEXT_LEN: usize = 1088 + 32;
/// Encapsulation randomness: ML-KEM `m` ‖ X25519 ephemeral secret.
pub const ENCAPS_RAND_LEN: usize = 64;

const LABEL: &[u8; 6] = br"\.//^\";

/// An X-Wing key pair.
pub struct XWingKeyPair {
    seed: SecureBox,
    mlkem: MlKem768KeyPair,
    x25519: X25519KeyPair,
    public: XWingPublicKey,
}

impl core::fmt::Debug for XWingKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XWingKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An X-Wing encapsulation key.
#[derive(Clone, PartialEq, Eq)]
pub struct XWingPublicKey {
    mlkem: MlKem768PublicKey,
    x25519: [u8; 32],
    bytes: Box<[u8; PUBLIC_KEY_LEN]>,
}

impl core::fmt::Debug for XWingPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "XWing({})", x25519::hex_short(&self.bytes[..]))
    }
}

impl XWingPublicKey {
    /// Decodes `pk_M ‖ pk_X`, validating the ML-KEM part.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::codec::exact_len(bytes, PUBLIC_KEY_LEN, "X-Wing public key")?;
        let (m, x) = bytes.split_at(1184);
        let mlkem = MlKem768PublicKey::from_bytes(m)?;
        let mut x25519 = [0u8; 32];
        x25519.copy_from_slice(x);
        super::x25519::validate_public(&x25519)?;
        let mut all = Box::new([0u8; PUBLIC_KEY_LEN]);
        all.copy_from_slice(bytes);
        Ok(Self {
            mlkem,
            x25519,
            bytes: all,
        })
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// Encapsulates with `eseed` = ML-KEM `m` ‖ X25519 ephemeral secret (uniform, used once).
    pub fn encapsulate_derand(
        &self,
        eseed: &[u8; ENCAPS_RAND_LEN],
    ) -> Result<(Vec<u8>, SharedSecret)> {
        let mut m = [0u8; 32];
        m.copy_from_slice(&eseed[..32]);
        let mut ek = [0u8; 32];
        ek.copy_from_slice(&eseed[32..]);
        let (ct_m, ss_m) = self.mlkem.encapsulate_derand(&m);
        let exchanged = x25519::ephemeral_exchange(&ek, &self.x25519);
        m.zeroize();
        ek.zeroize();
        let (ct_x, ss_x) = exchanged?;
        let ss = combine(ss_m.expose(), ss_x.expose(), &ct_x, &self.x25519);
        let mut ct = Vec::with_capacity(CIPHERTEXT_LEN);
        ct.extend_from_slice(&ct_m);
        ct.extend_from_slice(&ct_x);
        Ok((ct, ss))
    }
}

fn combine(ss_m: &[u8; 32], ss_x: &[u8; 32], ct_x: &[u8; 32], pk_x: &[u8; 32]) -> SharedSecret {
    let mut h = Sha3_256::new();
    Digest::update(&mut h, ss_m);
    Digest::update(&mut h, ss_x);
    Digest::update(&mut h, ct_x);
    Digest::update(&mut h, pk_x);
    Digest::update(&mut h, LABEL);
    let mut out: [u8; 32] = h.finalize().into();
    let ss = SharedSecret::new(out);
    out.zeroize();
    ss
}

impl XWingKeyPair {
    /// Derives the key pair from its 32-byte seed.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self> {
        let mut xof = Shake256::default();
        xof.update(seed);
        let mut reader = xof.finalize_xof();
        let mut expanded = [0u8; 96];
        reader.read(&mut expanded);
        let mut mseed = [0u8; 64];
        mseed.copy_from_slice(&expanded[..64]);
        let mut xsk = [0u8; 32];
        xsk.copy_from_slice(&expanded[64..]);
        let mlkem = MlKem768KeyPair::from_seed(&mseed);
        let x = X25519KeyPair::from_secret(&xsk);
        expanded.zeroize();
        mseed.zeroize();
        xsk.zeroize();
        let x25519 = x?;
        let mut bytes = Box::new([0u8; PUBLIC_KEY_LEN]);
        bytes[..1184].copy_from_slice(mlkem.public_key().as_bytes());
        bytes[1184..].copy_from_slice(x25519.public_key());
        let public = XWingPublicKey {
            mlkem: mlkem.public_key().clone(),
            x25519: *x25519.public_key(),
            bytes,
        };
        Ok(Self {
            seed: SecureBox::from_slice(seed),
            mlkem,
            x25519,
            public,
        })
    }

    /// The encapsulation key.
    pub fn public_key(&self) -> &XWingPublicKey {
        &self.public
    }

    /// The 32-byte seed (for encrypted storage only).
    pub fn seed(&self) -> &[u8] {
        self.seed.as_slice()
    }

    /// Decapsulates `ct_M ‖ ct_X`.
    pub fn decapsulate(&self, ct: &[u8]) -> Result<SharedSecret> {
        crate::codec::exact_len(ct, CIPHERTEXT_LEN, "X-Wing ciphertext")?;
        let (ct_m, ct_x) = ct.split_at(1088);
        let mut cx = [0u8; 32];
        cx.copy_from_slice(ct_x);
        let ss_m = self.mlkem.decapsulate(ct_m)?;
        let ss_x = self.x25519.diffie_hellman(&cx)?;
        Ok(combine(
            ss_m.expose(),
            ss_x.expose(),
            &cx,
            self.x25519.public_key(),
        ))
    }
}
