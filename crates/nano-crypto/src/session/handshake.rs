//! The session handshake (PQXDH-shaped, with the initiator's signature over the transcript).
//!
//! ```text
//! header     = type (1) = 0x02 ‖ mode (1) ‖ aead (1) ‖ initiator fingerprint (32)
//!              ‖ responder fingerprint (32) ‖ signed prekeys id (4, BE) ‖ kem kind (1)
//!              ‖ [one-time prekey id (4, BE) if kind = 1] ‖ [ek (32): classical, hybrid]
//!              ‖ [KEM ciphertext if kind ≠ 0]
//! kem kind   = 0 none (classical without one-time prekeys), 1 one-time, 2 last-resort
//! transcript = header ‖ [responder's X25519 signed prekey (32)] ‖ [the KEM prekey used]
//! id         = SHA-256("nano-messenger/v1 session-id" ‖ transcript)
//! sig        = initiator's `mode` identity key over transcript, context "session-handshake"
//! ikm        = 0xFF × 32 ‖ [X25519(ek, signed prekey)] ‖ [KEM shared secret]
//! rk ‖ ck_i ‖ ck_r ‖ pq_0 = HKDF-SHA256(salt = "", ikm,
//!                          info = "nano-messenger/v1 session-root" ‖ id)        (128 bytes)
//! wire       = header ‖ sig ‖ first session message
//! ```
//!
//! The responder is authenticated by its signed prekeys (only it can decapsulate or complete
//! the DH), the initiator by its transcript signature, in every mode with that mode's signature
//! scheme: hybrid and quantum sessions are post-quantum authenticated on both sides from the
//! start. Quantum mode performs no elliptic-curve operation. The initiator's `ek` is also its
//! first ratchet key.

use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

use super::chain::{self, Chain};
use super::kem_ratchet::KemRatchet;
use super::message::{TYPE_HANDSHAKE, has_dh, has_kem};
use super::prekey::PrekeyBundle;
use super::prekey_secrets::PrekeySecrets;
use super::ratchet::DhState;
use super::{Session, SessionError};
use crate::aead::AeadId;
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::identity::{Fingerprint, Identity, PublicBundle};
use crate::kdf::{self, KdfLabel};
use crate::kem::{self, KemCiphertext, KemPublicKey};
use crate::mode::CryptoMode;
use crate::primitives::x25519::{self, EphemeralX25519};
use crate::secret::SecretBytes;
use crate::sign::{self, SigContext, Signature};

type Result<T> = core::result::Result<T, SessionError>;

const SESSION_ID_LABEL: &[u8] = b"nano-messenger/v1 session-id";

const KIND_NONE: u8 = 0;
const KIND_ONE_TIME: u8 = 1;
const KIND_LAST_RESORT: u8 = 2;

/// What [`Session::respond`] returns. `Debug` leaves out the plaintext.
pub struct Responded {
    /// The new session (responder side).
    pub session: Session,
    /// The first message's plaintext.
    pub plaintext: Vec<u8>,
    /// The one-time prekey the handshake used (its secret is now deleted), if any.
    pub one_time_prekey: Option<u32>,
}

impl core::fmt::Debug for Responded {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responded")
            .field("session", &self.session)
            .field("plaintext_len", &self.plaintext.len())
            .field("one_time_prekey", &self.one_time_prekey)
            .finish()
    }
}

struct Parsed<'a> {
    header: &'a [u8],
    mode: CryptoMode,
    aead: AeadId,
    initiator: [u8; 32],
    responder: [u8; 32],
    signed_id: u32,
    kind: u8,
    one_time_id: u32,
    ek: Option<[u8; 32]>,
    ct: Option<KemCiphertext>,
    sig: Signature,
    first: &'a [u8],
}

fn parse(bytes: &[u8]) -> core::result::Result<Parsed<'_>, CryptoError> {
    let mut r = Reader::new(bytes);
    let kind = r.u8("handshake type")?;
    if kind != TYPE_HANDSHAKE {
        return Err(CryptoError::UnsupportedVersion {
            what: "session handshake",
            version: kind,
        });
    }
    let mode = CryptoMode::from_byte(r.u8("handshake mode")?)?;
    let aead = AeadId::from_byte(r.u8("handshake aead")?)?;
    let initiator = r.array("initiator fingerprint")?;
    let responder = r.array("responder fingerprint")?;
    let signed_id = r.u32("signed prekeys id")?;
    let kem_kind = r.u8("kem kind")?;
    let valid_kind = match mode {
        CryptoMode::Classical => kem_kind <= KIND_ONE_TIME,
        _ => kem_kind == KIND_ONE_TIME || kem_kind == KIND_LAST_RESORT,
    };
    if !valid_kind {
        return Err(CryptoError::MalformedBundle("handshake kem kind"));
    }
    let one_time_id = if kem_kind == KIND_ONE_TIME {
        r.u32("one-time prekey id")?
    } else {
        0
    };
    let ek = if has_dh(mode) {
        let k = r.array::<{ x25519::PUBLIC_KEY_LEN }>("handshake ek")?;
        // Used at once in a DH, which rejects small-order points (all-zero output).
        x25519::check_canonical(&k)?;
        Some(k)
    } else {
        None
    };
    let ct = if kem_kind == KIND_NONE {
        None
    } else {
        Some(KemCiphertext::from_bytes(
            mode,
            r.take(kem::ciphertext_len(mode), "handshake KEM ciphertext")?,
        )?)
    };
    let header_len = bytes.len() - r.rest_len();
    let sig = Signature::from_bytes(
        mode,
        r.take(sign::signature_len(mode), "handshake signature")?,
    )?;
    let first = r.take(r.rest_len(), "first message")?;
    Ok(Parsed {
        header: &bytes[..header_len],
        mode,
        aead,
        initiator,
        responder,
        signed_id,
        kind: kem_kind,
        one_time_id,
        ek,
        ct,
        sig,
        first,
    })
}

/// The mode and the first session message of a handshake, after checking its structure.
pub(crate) fn first_message(
    bytes: &[u8],
) -> core::result::Result<(CryptoMode, &[u8]), SessionError> {
    let p = parse(bytes)?;
    Ok((p.mode, p.first))
}

fn transcript(header: &[u8], spk: Option<&[u8; 32]>, kem_pk: Option<&KemPublicKey>) -> Vec<u8> {
    let mut t = header.to_vec();
    if let Some(k) = spk {
        t.extend_from_slice(k);
    }
    if let Some(k) = kem_pk {
        t.extend_from_slice(k.as_bytes());
    }
    t
}

fn session_id(transcript: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SESSION_ID_LABEL);
    h.update(transcript);
    h.finalize().into()
}

/// The root, both first chain keys and epoch key 0.
struct RootKeys {
    root: crate::secret::SymmetricKey,
    ck_initiator: crate::secret::SymmetricKey,
    ck_responder: crate::secret::SymmetricKey,
    pq0: crate::secret::SymmetricKey,
}

fn root_keys(dh: Option<&[u8; 32]>, ss: Option<&[u8; 32]>, id: &[u8; 32]) -> Result<RootKeys> {
    let mut ikm = zeroize::Zeroizing::new(Vec::with_capacity(96));
    ikm.extend_from_slice(&[0xff; 32]);
    if let Some(d) = dh {
        ikm.extend_from_slice(d);
    }
    if let Some(s) = ss {
        ikm.extend_from_slice(s);
    }
    let out: SecretBytes<128> = kdf::derive(KdfLabel::SessionRoot, b"", &ikm, &[id])?;
    let b = out.expose();
    Ok(RootKeys {
        root: chain::key32(&b[..32]),
        ck_initiator: chain::key32(&b[32..64]),
        ck_responder: chain::key32(&b[64..96]),
        pq0: chain::key32(&b[96..]),
    })
}

fn mode_keys<'a>(
    me: &'a Identity,
    peer: &'a PublicBundle,
    mode: CryptoMode,
) -> Result<(&'a sign::SigningKeyPair, &'a sign::VerifyingKey)> {
    let mine = me.signer(mode).ok_or(SessionError::ModeMismatch {
        expected: me.min_mode(),
        got: mode,
    })?;
    let theirs = peer.verifying_key(mode).ok_or(SessionError::ModeMismatch {
        expected: peer.min_mode(),
        got: mode,
    })?;
    Ok((mine, theirs))
}

impl Session {
    /// Starts a session with `peer` from its prekey `bundle`, sealing `plaintext` as the first
    /// message. Verifies every prekey signature first. Returns the session and the handshake
    /// message to send (header ‖ signature ‖ first session message; sizes in
    /// `docs/PROTOCOL.md` §14).
    ///
    /// Randomness is drawn in this order: ek (32 bytes; classical, hybrid), the KEM's
    /// encapsulation randomness (if a KEM prekey is used), the signature's hedge (32; hybrid,
    /// quantum), the first ratchet encapsulation-key seed (64; hybrid, quantum).
    ///
    /// # Errors
    /// [`SessionError::ModeMismatch`] if either identity lacks the bundle's mode;
    /// [`SessionError::BadPrekeySignature`]; RNG or primitive failures.
    pub fn initiate(
        me: &Identity,
        peer: &PublicBundle,
        bundle: &PrekeyBundle,
        aead: AeadId,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Session, Vec<u8>)> {
        let mode = bundle.mode();
        let (signer, _) = mode_keys(me, peer, mode)?;
        bundle.verify(peer)?;
        let signed = bundle.signed();
        let (ek, dh) = match signed.x25519() {
            Some(spk) => {
                let mut s = zeroize::Zeroizing::new([0u8; 32]);
                rng.try_fill_bytes(&mut s[..])
                    .map_err(|_| CryptoError::Rng)?;
                let ek = EphemeralX25519::from_secret(&s)?;
                let dh = ek.diffie_hellman(spk)?;
                (Some(ek), Some(dh))
            }
            None => (None, None),
        };
        let (kind, one_time_id, kem_pk) = match (bundle.one_time(), signed.last_resort()) {
            (Some(o), _) => (KIND_ONE_TIME, o.id(), Some(o.key())),
            (None, Some(lr)) => (KIND_LAST_RESORT, 0, Some(lr)),
            (None, None) => (KIND_NONE, 0, None),
        };
        let encapsulated = kem_pk.map(|pk| pk.encapsulate(rng)).transpose()?;

        let mut header = vec![TYPE_HANDSHAKE, mode.to_byte(), aead.to_byte()];
        header.extend_from_slice(&me.fingerprint().0);
        header.extend_from_slice(&peer.fingerprint().0);
        header.extend_from_slice(&signed.id().to_be_bytes());
        header.push(kind);
        if kind == KIND_ONE_TIME {
            header.extend_from_slice(&one_time_id.to_be_bytes());
        }
        if let Some(ek) = &ek {
            header.extend_from_slice(ek.public_key());
        }
        if let Some((ct, _)) = &encapsulated {
            header.extend_from_slice(ct.as_bytes());
        }
        let t = transcript(&header, signed.x25519(), kem_pk);
        let id = session_id(&t);
        let sig = signer.sign(SigContext::SessionHandshake, &t, rng)?;
        let keys = root_keys(
            dh.as_ref().map(SecretBytes::expose),
            encapsulated.as_ref().map(|(_, ss)| ss.expose()),
            &id,
        )?;
        let mut session = Session::assemble(
            mode,
            aead,
            id,
            true,
            me.fingerprint(),
            peer.fingerprint(),
            keys,
            ek,
            None,
            rng,
        )?;
        let first = session.encrypt(plaintext, rng)?;
        let mut wire = header;
        wire.extend_from_slice(sig.as_bytes());
        wire.extend_from_slice(&first);
        Ok((session, wire))
    }

    /// Accepts a handshake from `peer` (the identity the caller pinned for its sender): checks
    /// both fingerprints and the transcript signature, derives the session from `prekeys`, and
    /// decrypts the first message. On success the one-time prekey used is deleted from
    /// `prekeys`; on any error nothing changes (so a replayed handshake that named a one-time
    /// prekey fails with [`SessionError::UnknownPrekey`]).
    ///
    /// # Errors
    /// [`SessionError::Malformed`], [`SessionError::ModeMismatch`],
    /// [`SessionError::WrongIdentity`], [`SessionError::UnknownPrekey`],
    /// [`SessionError::BadTranscriptSignature`], [`SessionError::DecryptFailed`].
    pub fn respond(
        me: &Identity,
        prekeys: &mut PrekeySecrets,
        peer: &PublicBundle,
        message: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Responded> {
        let p = parse(message)?;
        if p.mode != prekeys.mode() {
            return Err(SessionError::ModeMismatch {
                expected: prekeys.mode(),
                got: p.mode,
            });
        }
        let (_, verifier) = mode_keys(me, peer, p.mode)?;
        if Fingerprint(p.responder) != me.fingerprint() {
            return Err(SessionError::WrongIdentity("responder"));
        }
        if Fingerprint(p.initiator) != peer.fingerprint() {
            return Err(SessionError::WrongIdentity("initiator"));
        }
        let signed = prekeys
            .signed(p.signed_id)
            .ok_or(SessionError::UnknownPrekey {
                kind: "signed",
                id: p.signed_id,
            })?;
        let kem_kp = match p.kind {
            KIND_ONE_TIME => Some(prekeys.one_time_key(p.one_time_id).ok_or(
                SessionError::UnknownPrekey {
                    kind: "one-time",
                    id: p.one_time_id,
                },
            )?),
            KIND_LAST_RESORT => signed.last_resort(),
            _ => None,
        };
        let kem_pk = kem_kp.map(crate::kem::KemKeyPair::public_key);
        let spk = signed.x25519();
        let t = transcript(p.header, spk.map(|k| k.public_key()), kem_pk.as_ref());
        verifier
            .verify(SigContext::SessionHandshake, &t, &p.sig)
            .map_err(|_| SessionError::BadTranscriptSignature)?;
        let id = session_id(&t);
        if p.kind != KIND_ONE_TIME && prekeys.has_seen(p.signed_id, &id) {
            // A handshake against prekeys that are not one-time is accepted once: a replay
            // would rebuild the same session, and a quantum responder's first chain with it.
            return Err(SessionError::Duplicate);
        }
        let dh = match (spk, &p.ek) {
            (Some(k), Some(ek)) => Some(k.diffie_hellman(ek)?),
            _ => None,
        };
        let ss = match (kem_kp, &p.ct) {
            (Some(k), Some(ct)) => Some(k.decapsulate(ct)?),
            _ => None,
        };
        let keys = root_keys(
            dh.as_ref().map(SecretBytes::expose),
            ss.as_ref().map(SecretBytes::expose),
            &id,
        )?;
        let mut session = Session::assemble(
            p.mode,
            p.aead,
            id,
            false,
            me.fingerprint(),
            peer.fingerprint(),
            keys,
            None,
            p.ek,
            rng,
        )?;
        let plaintext = session.decrypt(p.first, rng)?;
        let one_time_prekey = (p.kind == KIND_ONE_TIME).then_some(p.one_time_id);
        match one_time_prekey {
            Some(id) => prekeys.consume_one_time(id),
            None => prekeys.remember(p.signed_id, id),
        }
        Ok(Responded {
            session,
            plaintext,
            one_time_prekey,
        })
    }

    /// Builds either side's state from the root keys.
    #[allow(clippy::too_many_arguments)] // one private constructor, called from the two sides
    fn assemble(
        mode: CryptoMode,
        aead: AeadId,
        id: [u8; 32],
        initiator: bool,
        local: Fingerprint,
        remote: Fingerprint,
        keys: RootKeys,
        my_ratchet: Option<EphemeralX25519>,
        their_ratchet: Option<[u8; 32]>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        let RootKeys {
            root,
            ck_initiator,
            ck_responder,
            pq0,
        } = keys;
        let (mine, theirs) = if initiator {
            (ck_initiator, ck_responder)
        } else {
            (ck_responder, ck_initiator)
        };
        let (send, recv, dh) = if has_dh(mode) {
            // The initiator's ek is its first ratchet key: it sends on ck_i; the responder
            // starts sending after its first DH ratchet step.
            let dh = DhState::new(root, my_ratchet, their_ratchet);
            if initiator {
                (Some(Chain::new(mine)), None, Some(dh))
            } else {
                (None, Some(Chain::new(theirs)), Some(dh))
            }
        } else {
            (Some(Chain::new(mine)), Some(Chain::new(theirs)), None)
        };
        let kem = if has_kem(mode) {
            Some(KemRatchet::new(mode, initiator, pq0, rng)?)
        } else {
            None
        };
        Ok(Self {
            mode,
            aead,
            id,
            initiator,
            local,
            remote,
            send,
            recv,
            dh,
            kem,
            skipped: Default::default(),
        })
    }
}
