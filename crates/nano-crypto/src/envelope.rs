//! The sealed envelope: a stateless, signed, end-to-end encrypted message.
//!
//! ```text
//! header  = version (1) ‖ mode (1) ‖ aead (1) ‖ message_id (16) ‖ timestamp_ms (8, BE)
//!           ‖ sender fingerprint (32) ‖ recipient fingerprint (32)                  = 91 bytes
//! (ct, ss) = KEM.Encaps(recipient's key for mode)
//! key ‖ nonce = HKDF-SHA256(salt = "", ikm = ss, info = "nano-messenger/v1 envelope-key"
//!                           ‖ header ‖ ct)                                        (32 + 12)
//! body    = AEAD.Seal(key, nonce, aad = header, plaintext)
//! signed  = header ‖ ct ‖ len(body) (4, BE) ‖ body
//! sig     = sender's `mode` key over `signed`, context "envelope"
//! wire    = signed ‖ sig
//! ```
//!
//! Opening checks, in order: structure and lengths, the addressed recipient, the claimed sender,
//! the mode against the recipient's keys, the signature, then decapsulation and decryption, so
//! an unauthenticated envelope costs a signature check and nothing more.

use rand_core::{CryptoRngCore, RngCore};

use crate::aead::{AeadId, AeadKey, NONCE_LEN, TAG_LEN};
use crate::batch::VerificationTask;
use crate::codec::Reader;
use crate::error::{CryptoError, Result};
use crate::identity::{Fingerprint, Identity, PublicBundle};
use crate::kdf::{self, KdfLabel};
use crate::kem::{self, KemCiphertext};
use crate::mode::CryptoMode;
use crate::secret::{SecretBytes, SymmetricKey};
use crate::sign::{self, SigContext, Signature, VerifyingKey};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 3 + 16 + 8 + 32 + 32;
/// Largest plaintext an envelope may carry: 65,536 bytes (64 KiB). A message, not a file
/// (PROTOCOL.md §6, "Size limits").
pub const MAX_PLAINTEXT_LEN: usize = 1 << 16;

/// Bytes an envelope adds to a plaintext in `mode`.
pub const fn overhead(mode: CryptoMode) -> usize {
    HEADER_LEN + kem::ciphertext_len(mode) + 4 + TAG_LEN + sign::signature_len(mode)
}

/// Largest valid encoded envelope in any mode: 65,536 + 6,306 = 71,842 bytes.
pub const MAX_ENVELOPE_LEN: usize = MAX_PLAINTEXT_LEN + overhead(CryptoMode::Quantum);

/// The authenticated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The suite.
    pub mode: CryptoMode,
    /// The AEAD.
    pub aead: AeadId,
    /// 16 random bytes; the relay deduplicates on it.
    pub message_id: [u8; 16],
    /// Sender's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Sender's bundle fingerprint.
    pub sender: Fingerprint,
    /// Recipient's bundle fingerprint.
    pub recipient: Fingerprint,
}

impl EnvelopeHeader {
    /// The 91-byte encoding.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = ENVELOPE_VERSION;
        h[1] = self.mode.to_byte();
        h[2] = self.aead.to_byte();
        h[3..19].copy_from_slice(&self.message_id);
        h[19..27].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        h[27..59].copy_from_slice(&self.sender.0);
        h[59..91].copy_from_slice(&self.recipient.0);
        h
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let version = r.u8("envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "envelope",
                version,
            });
        }
        Ok(Self {
            mode: CryptoMode::from_byte(r.u8("envelope mode")?)?,
            aead: AeadId::from_byte(r.u8("envelope aead")?)?,
            message_id: r.array("message id")?,
            timestamp_ms: r.u64("timestamp")?,
            sender: Fingerprint(r.array("sender")?),
            recipient: Fingerprint(r.array("recipient")?),
        })
    }
}

/// A parsed (not yet verified or decrypted) envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    header: EnvelopeHeader,
    kem_ct: KemCiphertext,
    /// Where the AEAD body starts in `bytes` (it ends at `signed_len`): kept as an offset so a
    /// 64 KiB body is held once.
    body_start: usize,
    signature: Signature,
    signed_len: usize,
    bytes: Vec<u8>,
}

/// What the caller controls when sealing; [`seal`] fills it from the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealParams {
    /// The suite.
    pub mode: CryptoMode,
    /// The AEAD.
    pub aead: AeadId,
    /// The message id (random in [`seal`]).
    pub message_id: [u8; 16],
    /// The timestamp (now in [`seal`]).
    pub timestamp_ms: u64,
}

/// Seals `plaintext` from `sender` to `recipient` in `mode` with `aead`, using the OS RNG and
/// clock.
pub fn seal(
    sender: &Identity,
    recipient: &PublicBundle,
    plaintext: &[u8],
    mode: CryptoMode,
    aead: AeadId,
) -> Result<Vec<u8>> {
    let mut rng = rand_core::OsRng;
    let mut message_id = [0u8; 16];
    rng.try_fill_bytes(&mut message_id)
        .map_err(|_| CryptoError::Rng)?;
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let params = SealParams {
        mode,
        aead,
        message_id,
        timestamp_ms,
    };
    seal_with(sender, recipient, plaintext, params, &mut rng)
}

/// Seals with explicit parameters and randomness. `rng` must be a CSPRNG: the envelope key and
/// nonce come from the KEM randomness it supplies, so a seeded RNG reused with different
/// plaintexts repeats key and nonce. A seeded RNG is for test vectors only.
pub fn seal_with(
    sender: &Identity,
    recipient: &PublicBundle,
    plaintext: &[u8],
    params: SealParams,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>> {
    let mode = params.mode;
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(CryptoError::TooLarge {
            what: "plaintext",
            max: MAX_PLAINTEXT_LEN,
            got: plaintext.len(),
        });
    }
    let floor = sender.min_mode().max(recipient.min_mode());
    mode.at_least(floor)?;
    let kem_pk = recipient
        .kem_key(mode)
        .ok_or(CryptoError::ModeNotAllowed { mode, floor })?;
    let signer = sender
        .signer(mode)
        .ok_or(CryptoError::ModeNotAllowed { mode, floor })?;
    let header = EnvelopeHeader {
        mode,
        aead: params.aead,
        message_id: params.message_id,
        timestamp_ms: params.timestamp_ms,
        sender: sender.fingerprint(),
        recipient: recipient.fingerprint(),
    }
    .to_bytes();
    let (ct, ss) = kem_pk.encapsulate(rng)?;
    let (key, nonce) = derive_key(&ss, &header, ct.as_bytes())?;
    let body = AeadKey::new(params.aead, &key)?.seal(&nonce, &header, plaintext)?;
    let mut out = Vec::with_capacity(plaintext.len() + overhead(mode));
    out.extend_from_slice(&header);
    out.extend_from_slice(ct.as_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    let sig = signer.sign(SigContext::Envelope, &out, rng)?;
    out.extend_from_slice(sig.as_bytes());
    Ok(out)
}

fn derive_key(
    ss: &SecretBytes<32>,
    header: &[u8; HEADER_LEN],
    ct: &[u8],
) -> Result<(SymmetricKey, [u8; NONCE_LEN])> {
    let okm: SecretBytes<44> = kdf::derive(KdfLabel::EnvelopeKey, b"", ss.expose(), &[header, ct])?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&okm.expose()[..32]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm.expose()[32..]);
    let k = SymmetricKey::new(key);
    zeroize::Zeroize::zeroize(&mut key);
    Ok((k, nonce))
}

impl Envelope {
    /// Parses an envelope. Every length is fixed by the mode or bounded by
    /// [`MAX_PLAINTEXT_LEN`]; trailing or missing bytes are errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(CryptoError::TooLarge {
                what: "envelope",
                max: MAX_ENVELOPE_LEN,
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        let header = EnvelopeHeader::read(&mut r)?;
        let mode = header.mode;
        let kem_ct =
            KemCiphertext::from_bytes(mode, r.take(kem::ciphertext_len(mode), "KEM ciphertext")?)?;
        let body_len = r.u32("body length")? as usize;
        if body_len < TAG_LEN {
            return Err(CryptoError::InvalidLength {
                what: "envelope body",
                expected: TAG_LEN,
                got: body_len,
            });
        }
        if body_len > MAX_PLAINTEXT_LEN + TAG_LEN {
            return Err(CryptoError::TooLarge {
                what: "envelope body",
                max: MAX_PLAINTEXT_LEN + TAG_LEN,
                got: body_len,
            });
        }
        let body_start = bytes.len() - r.rest_len();
        r.take(body_len, "body")?;
        let signed_len = bytes.len() - r.rest_len();
        let signature =
            Signature::from_bytes(mode, r.take(sign::signature_len(mode), "signature")?)?;
        r.finish("envelope")?;
        Ok(Self {
            header,
            kem_ct,
            body_start,
            signature,
            signed_len,
            bytes: bytes.to_vec(),
        })
    }

    /// The header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes covered by the signature.
    pub fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.signed_len]
    }

    /// A task for the [`crate::BatchVerifier`] checking this envelope's signature against
    /// `sender`, tagged with `id`.
    pub fn verification_task(&self, sender: &PublicBundle, id: u64) -> Result<VerificationTask> {
        self.check_sender(sender)?;
        let key = sender
            .verifying_key(self.header.mode)
            .ok_or(CryptoError::ModeNotAllowed {
                mode: self.header.mode,
                floor: sender.min_mode(),
            })?;
        self.task(key, id)
    }

    fn task(&self, key: &VerifyingKey, id: u64) -> Result<VerificationTask> {
        VerificationTask::new(
            id,
            key,
            SigContext::Envelope,
            self.signed_part(),
            &self.signature,
        )
    }

    fn check_sender(&self, sender: &PublicBundle) -> Result<()> {
        if self.header.sender == sender.fingerprint() {
            Ok(())
        } else {
            Err(CryptoError::IdentityMismatch("sender"))
        }
    }

    /// Addressing and mode checks; the recipient's KEM key and the sender's verifying key for
    /// this envelope.
    fn precheck<'a, 'b>(
        &self,
        recipient: &'a Identity,
        sender: &'b PublicBundle,
    ) -> Result<(&'a crate::kem::KemKeyPair, &'b VerifyingKey)> {
        if self.header.recipient != recipient.fingerprint() {
            return Err(CryptoError::IdentityMismatch("recipient"));
        }
        self.check_sender(sender)?;
        let mode = self.header.mode;
        let floor = recipient.min_mode().max(sender.min_mode());
        recipient
            .kem(mode)
            .zip(sender.verifying_key(mode))
            .filter(|_| mode >= floor)
            .ok_or(CryptoError::ModeNotAllowed { mode, floor })
    }

    /// Decapsulates and decrypts; callers have checked the signature.
    fn decrypt(&self, kem: &crate::kem::KemKeyPair) -> Result<Vec<u8>> {
        let ss = kem.decapsulate(&self.kem_ct)?;
        // The header as received: parsing accepted exactly the canonical encoding.
        let header: &[u8; HEADER_LEN] = self.bytes[..HEADER_LEN]
            .try_into()
            .map_err(|_| CryptoError::Internal("envelope header"))?;
        let (key, nonce) = derive_key(&ss, header, self.kem_ct.as_bytes())?;
        let body = &self.bytes[self.body_start..self.signed_len];
        AeadKey::new(self.header.aead, &key)?.open(&nonce, header, body)
    }

    /// Checks addressing, mode and signature, then decrypts.
    pub fn open(&self, recipient: &Identity, sender: &PublicBundle) -> Result<Vec<u8>> {
        let (kem, key) = self.precheck(recipient, sender)?;
        key.verify(SigContext::Envelope, self.signed_part(), &self.signature)?;
        self.decrypt(kem)
    }
}

/// Opens many envelopes addressed to `recipient` (an offline inbox), checking all their
/// signatures together through a [`crate::BatchVerifier`]: one Ed25519 batch equation, ML-DSA
/// spread over cores. Each result is as [`Envelope::open`]'s would be, in input order.
pub fn open_many(
    recipient: &Identity,
    items: &[(&Envelope, &PublicBundle)],
) -> Vec<Result<Vec<u8>>> {
    let mut out: Vec<Option<Result<Vec<u8>>>> = Vec::with_capacity(items.len());
    let mut tasks = Vec::new();
    let mut kems = Vec::new();
    for (i, (env, sender)) in items.iter().enumerate() {
        let prepared = env
            .precheck(recipient, sender)
            .and_then(|(kem, key)| Ok((kem, env.task(key, i as u64)?)));
        match prepared {
            Ok((kem, task)) => {
                tasks.push(task);
                kems.push((i, kem));
                out.push(None);
            }
            Err(e) => out.push(Some(Err(e))),
        }
    }
    let mut verifier = crate::batch::BatchVerifier::new(tasks.len(), std::time::Duration::ZERO);
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(r) = verifier.push(t) {
            results.extend(r);
        }
    }
    results.extend(verifier.flush());
    for ((i, kem), r) in kems.into_iter().zip(results) {
        out[i] = Some(r.outcome.and_then(|()| items[i].0.decrypt(kem)));
    }
    out.into_iter()
        .map(|r| r.unwrap_or(Err(CryptoError::Internal("envelope not processed"))))
        .collect()
}

/// Parses and opens `bytes` addressed to `recipient` from `sender`.
pub fn open(recipient: &Identity, sender: &PublicBundle, bytes: &[u8]) -> Result<Vec<u8>> {
    Envelope::from_bytes(bytes)?.open(recipient, sender)
}
