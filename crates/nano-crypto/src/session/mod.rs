//! Sessions: a PQ-authenticated handshake and a triple ratchet, for forward secrecy and
//! post-compromise security at a per-message cost near the AEAD's.
//!
//! Pure computation like the rest of the crate. Byte layouts are in each file's header and in
//! `docs/PROTOCOL.md` §14; the pieces:
//!
//! ```text
//! prekey       PrekeyBundle (what a relay serves), SignedPrekeys (which sign a one-time root)
//! one_time     OneTimePrekey, OneTimeBatch (a root over an upload), OneTimeInclusion (a served
//!              one-time prekey with its proof), OneTimePrekeys (their secrets)
//! prekey_tree  the RFC 9162 Merkle tree over a batch of one-time prekeys
//! prekey_secrets SignedPrekeySecrets (and `certify`, which signs a record), PrekeySecrets
//! prekey_state PrekeySecrets::to_bytes / from_bytes (versioned, for an encrypted store)
//! handshake    Session::initiate / Session::respond: transcript, initiator signature, root keys
//! ratchet      Session::encrypt / Session::decrypt: chains, X25519 DH ratchet, skipped keys
//! kem_ratchet  the sparse KEM ratchet: ML-KEM epochs in chunks on ordinary messages
//! chain        KDF_CK, KDF_RK, epoch keys, the per-message AEAD key
//! skipped      the bounded store of skipped message keys
//! message      the session message header and its varints
//! state        Session::to_bytes / Session::from_bytes (versioned, for an encrypted store)
//! error        SessionError
//! ```
//!
//! | mode | DH ratchet | KEM ratchet | handshake KEM | signatures |
//! |---|---|---|---|---|
//! | classical | X25519 | – | DHKEM-X25519 one-time prekey (if any) | Ed25519 |
//! | hybrid | X25519 | ML-KEM-768, 9-byte chunks | X-Wing | ML-DSA-65 + Ed25519 |
//! | quantum | – | ML-KEM-1024, 42-byte chunks | ML-KEM-1024 | ML-DSA-87 |

mod chain;
mod error;
mod handshake;
mod kem_ratchet;
mod message;
mod one_time;
mod prekey;
mod prekey_secrets;
mod prekey_state;
mod prekey_tree;
mod ratchet;
mod skipped;
mod state;
#[cfg(test)]
mod tests;

pub use error::SessionError;
pub use handshake::Responded;
pub use message::{MAX_HEADER_LEN, TYPE_HANDSHAKE, TYPE_MESSAGE, chunk_len};
pub use one_time::{
    MAX_ONE_TIME_BATCH, OneTimeBatch, OneTimeInclusion, OneTimePrekey, OneTimePrekeys,
};
pub use prekey::{PREKEY_BUNDLE_VERSION, PrekeyBundle, SignedPrekeys};
pub use prekey_secrets::{MAX_SEEN_HANDSHAKES, PrekeySecrets, SignedPrekeySecrets};
pub use prekey_state::PREKEY_SECRETS_VERSION;
pub use ratchet::MAX_SESSION_PLAINTEXT;
pub use skipped::{MAX_SKIP_PER_CHAIN, MAX_SKIPPED};
pub use state::SESSION_STATE_VERSION;

use rand_core::{RngCore, SeedableRng};

use crate::aead::{AeadId, TAG_LEN};
use crate::identity::Fingerprint;
use crate::mode::CryptoMode;

/// The randomness sessions are meant to run on: ChaCha20 seeded once from the operating system,
/// so a ratchet step costs no system call. One per thread or per client; never shared unlocked.
pub type SessionRng = rand_chacha::ChaCha20Rng;

/// A [`SessionRng`] seeded from the operating system.
///
/// # Errors
/// [`crate::CryptoError::Rng`] if the OS generator fails.
pub fn session_rng() -> Result<SessionRng, SessionError> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::OsRng
        .try_fill_bytes(&mut seed[..])
        .map_err(|_| SessionError::Crypto(crate::CryptoError::Rng))?;
    Ok(SessionRng::from_seed(*seed))
}

/// One side of a session with one peer in one mode. Not `Clone`: a copy of a ratchet state is
/// a key-reuse hazard. Secrets zeroize on drop and never print.
pub struct Session {
    mode: CryptoMode,
    aead: AeadId,
    id: [u8; 32],
    initiator: bool,
    local: Fingerprint,
    remote: Fingerprint,
    send: Option<chain::Chain>,
    recv: Option<chain::Chain>,
    dh: Option<ratchet::DhState>,
    kem: Option<kem_ratchet::KemRatchet>,
    skipped: skipped::SkippedKeys,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("mode", &self.mode)
            .field("id", &Fingerprint(self.id))
            .field("initiator", &self.initiator)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// Largest session payload, in bytes: the largest plaintext ([`MAX_SESSION_PLAINTEXT`]) in a
/// quantum handshake: 65,536 + 6,346 = 71,882.
pub const MAX_PAYLOAD_LEN: usize = MAX_SESSION_PLAINTEXT + max_overhead(CryptoMode::Quantum);

/// The most bytes any session payload of `mode` adds to its plaintext: a handshake with a
/// one-time prekey (header 76, `ek` 32 in classical and hybrid, the KEM ciphertext, the
/// signature; PROTOCOL.md §14.3) and the longest message header ([`MAX_HEADER_LEN`]) and tag:
/// 279 (classical), 4,676 (hybrid), 6,346 (quantum).
pub const fn max_overhead(mode: CryptoMode) -> usize {
    let ek = if message::has_dh(mode) { 32 } else { 0 };
    76 + ek
        + crate::kem::ciphertext_len(mode)
        + crate::sign::signature_len(mode)
        + message::MAX_HEADER_LEN
        + TAG_LEN
}

/// The mode a session payload is in, read from its clear header without any key: what a relay
/// needs to store and forward it and to enforce its mode floor. Checks the structure (a
/// handshake parses completely, including its first message's header; a message's header parses
/// and a tag follows) but nothing that needs a key.
///
/// # Errors
/// [`SessionError::Malformed`] for anything that is not a well-formed session handshake
/// (`0x02`) or message (`0x03`), or is longer than a session message can be.
pub fn payload_mode(bytes: &[u8]) -> Result<CryptoMode, SessionError> {
    let max = MAX_PAYLOAD_LEN;
    if bytes.len() > max {
        return Err(SessionError::Malformed(crate::CryptoError::TooLarge {
            what: "session payload",
            max,
            got: bytes.len(),
        }));
    }
    let (outer, first) = match bytes.first() {
        Some(&TYPE_HANDSHAKE) => {
            let (mode, first) = handshake::first_message(bytes)?;
            (Some(mode), first)
        }
        _ => (None, bytes),
    };
    let (h, len) = message::Header::decode(first)?;
    if first.len() < len + TAG_LEN {
        return Err(SessionError::Malformed(crate::CryptoError::Truncated {
            what: "session message tag",
        }));
    }
    match outer {
        Some(expected) if expected != h.mode => Err(SessionError::ModeMismatch {
            expected,
            got: h.mode,
        }),
        _ => Ok(h.mode),
    }
}

impl Session {
    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The AEAD every message of this session uses (chosen by the initiator).
    pub fn aead(&self) -> AeadId {
        self.aead
    }

    /// The session id: SHA-256 over the handshake transcript (32 bytes), the same on both sides.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Whether this side started the session.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// This side's identity fingerprint.
    pub fn local(&self) -> Fingerprint {
        self.local
    }

    /// The peer's identity fingerprint.
    pub fn remote(&self) -> Fingerprint {
        self.remote
    }

    /// The KEM epoch this side sends with (0 in classical mode; +1 per post-quantum refresh).
    pub fn epoch(&self) -> u32 {
        self.kem.as_ref().map_or(0, |k| k.send_epoch)
    }

    /// Messages sent and received since the sending epoch last changed (in classical mode:
    /// since the session started).
    pub fn messages_since_pq_refresh(&self) -> u64 {
        self.kem.as_ref().map_or(0, |k| k.since_refresh)
    }

    /// Skipped message keys currently held.
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    /// Bytes a steady-state message adds to its plaintext while its chain index is below 128:
    /// 52 (classical), 63 (hybrid), 63 (quantum); one more up to 16,383.
    pub const fn steady_overhead(mode: CryptoMode) -> usize {
        let kem = if message::has_kem(mode) {
            1 + 1 + message::chunk_len(mode)
        } else {
            0
        };
        let dh = if message::has_dh(mode) { 32 + 1 } else { 0 };
        2 + kem + dh + 1 + TAG_LEN
    }

    /// Resolves simultaneous initiation: when both sides started a session at once, each holds
    /// its own (initiator) session and the one from the peer's handshake (responder); both keep
    /// the one with the smaller [`Session::id`], so both converge on the same session. Keep the
    /// other only to decrypt messages already sent on it.
    pub fn converge(self, other: Session) -> (Session, Session) {
        if self.id <= other.id {
            (self, other)
        } else {
            (other, self)
        }
    }
}
