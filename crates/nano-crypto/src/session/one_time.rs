//! One-time prekeys: KEM keys a relay hands out once each, uploaded in batches whose Merkle
//! root (`prekey_tree`) the owner's signed-prekeys record signs, so a served one-time prekey
//! carries an inclusion proof (32 bytes per tree level) instead of a signature (64 bytes in
//! classical, 3,373 in hybrid, 4,627 in quantum).
//!
//! ```text
//! one-time prekey = mode (1) ‖ id (4, BE) ‖ KEM key (classical 32, hybrid 1216, quantum 1568)
//! inclusion       = one-time prekey ‖ leaf index (2, BE) ‖ proof (32 × proof_len(index, n))
//! ```
//!
//! `n` is the batch's size, which the signed-prekeys record states; a batch lists its one-time
//! prekeys in strictly increasing id order, leaf `i` being the `i`-th.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use super::SessionError;
use super::prekey_tree::{self, Hash};
use crate::codec::Reader;
use crate::error::CryptoError;
use crate::kem::{self, KemKeyPair, KemPublicKey};
use crate::mode::CryptoMode;

/// Most one-time prekeys in one batch (one [`OneTimePrekeys::generate`] call, one
/// [`OneTimeBatch`]).
pub const MAX_ONE_TIME_BATCH: u32 = 1_000;

type Result<T> = core::result::Result<T, SessionError>;

/// One public one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePrekey {
    mode: CryptoMode,
    id: u32,
    key: KemPublicKey,
}

impl OneTimePrekey {
    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The id the handshake names.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The KEM key.
    pub fn key(&self) -> &KemPublicKey {
        &self.key
    }

    /// The encoding (`mode ‖ id ‖ key`: 37, 1221 or 1573 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.key.as_bytes().len());
        out.push(self.mode.to_byte());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.key.as_bytes());
        out
    }

    /// Decodes a whole encoding.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] on bad structure or an invalid key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.finish("one-time prekey")?;
        Ok(v)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let mode = CryptoMode::from_byte(r.u8("prekey mode")?)?;
        let id = r.u32("prekey id")?;
        let key =
            KemPublicKey::from_bytes(mode, r.take(kem::public_key_len(mode), "one-time prekey")?)?;
        Ok(Self { mode, id, key })
    }

    fn leaf_hash(&self) -> Hash {
        prekey_tree::leaf_hash(&self.to_bytes())
    }
}

/// The public one-time prekeys of one upload, in strictly increasing id order, and the root of
/// their Merkle tree, which [`super::SignedPrekeySecrets::certify`] signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeBatch {
    prekeys: Vec<OneTimePrekey>,
    leaves: Vec<Hash>,
    root: Hash,
}

impl OneTimeBatch {
    /// A batch of `prekeys`.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for none, more than [`MAX_ONE_TIME_BATCH`], or ids not
    /// strictly increasing; [`SessionError::ModeMismatch`] for prekeys of several modes.
    pub fn new(prekeys: Vec<OneTimePrekey>) -> Result<Self> {
        let first = prekeys
            .first()
            .ok_or_else(|| SessionError::malformed("an empty one-time prekey batch"))?;
        if prekeys.len() > MAX_ONE_TIME_BATCH as usize {
            return Err(CryptoError::TooLarge {
                what: "one-time prekey batch",
                max: MAX_ONE_TIME_BATCH as usize,
                got: prekeys.len(),
            }
            .into());
        }
        let mode = first.mode;
        for pair in prekeys.windows(2) {
            if pair[1].id <= pair[0].id {
                return Err(SessionError::malformed(
                    "one-time prekey ids not strictly increasing",
                ));
            }
        }
        if let Some(p) = prekeys.iter().find(|p| p.mode != mode) {
            return Err(SessionError::ModeMismatch {
                expected: mode,
                got: p.mode,
            });
        }
        let leaves: Vec<Hash> = prekeys.iter().map(OneTimePrekey::leaf_hash).collect();
        let root = prekey_tree::root(&leaves);
        Ok(Self {
            prekeys,
            leaves,
            root,
        })
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.prekeys[0].mode
    }

    /// The one-time prekeys, in id order.
    pub fn prekeys(&self) -> &[OneTimePrekey] {
        &self.prekeys
    }

    /// How many (1 ..= [`MAX_ONE_TIME_BATCH`]).
    pub fn len(&self) -> u16 {
        // At most MAX_ONE_TIME_BATCH (checked in `new`).
        self.prekeys.len() as u16
    }

    /// Never empty (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The Merkle root (RFC 9162 §2.1.1), 32 bytes.
    pub fn root(&self) -> &[u8; 32] {
        &self.root
    }

    /// Every one-time prekey with its inclusion proof, in id order: what a relay stores and
    /// serves.
    pub fn inclusions(&self) -> impl Iterator<Item = OneTimeInclusion> + '_ {
        self.prekeys
            .iter()
            .enumerate()
            .map(|(i, p)| OneTimeInclusion {
                prekey: p.clone(),
                index: i as u16,
                proof: prekey_tree::proof(&self.leaves, i),
            })
    }
}

/// A one-time prekey as served: with its leaf index and inclusion proof in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeInclusion {
    prekey: OneTimePrekey,
    index: u16,
    proof: Vec<Hash>,
}

impl OneTimeInclusion {
    /// The one-time prekey.
    pub fn prekey(&self) -> &OneTimePrekey {
        &self.prekey
    }

    /// Its leaf index in its batch.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The encoding (`one-time prekey ‖ index ‖ proof`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.prekey.to_bytes();
        out.extend_from_slice(&self.index.to_be_bytes());
        for h in &self.proof {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes a whole encoding from a batch of `batch_size` prekeys.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] on bad structure, an invalid key or an index past the batch.
    pub fn from_bytes(bytes: &[u8], batch_size: u16) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r, batch_size)?;
        r.finish("one-time prekey inclusion")?;
        Ok(v)
    }

    pub(crate) fn read(r: &mut Reader<'_>, batch_size: u16) -> Result<Self> {
        let prekey = OneTimePrekey::read(r)?;
        let index = r.u16("one-time prekey index")?;
        if index >= batch_size {
            return Err(SessionError::malformed(
                "one-time prekey index past its batch",
            ));
        }
        let len = prekey_tree::proof_len(usize::from(index), usize::from(batch_size));
        let proof = (0..len)
            .map(|_| r.array::<32>("inclusion proof"))
            .collect::<core::result::Result<_, _>>()?;
        Ok(Self {
            prekey,
            index,
            proof,
        })
    }

    /// The root this proof implies in a batch of `batch_size` (`None` if it fits no such batch).
    pub(crate) fn root(&self, batch_size: u16) -> Option<Hash> {
        prekey_tree::root_from_proof(
            &self.prekey.leaf_hash(),
            usize::from(self.index),
            usize::from(batch_size),
            &self.proof,
        )
    }
}

/// One-time prekey secrets and their public halves, by id.
pub struct OneTimePrekeys {
    pub(super) mode: CryptoMode,
    pub(super) keys: BTreeMap<u32, (KemKeyPair, OneTimePrekey)>,
}

impl core::fmt::Debug for OneTimePrekeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneTimePrekeys")
            .field("mode", &self.mode)
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl OneTimePrekeys {
    /// An empty set.
    pub fn empty(mode: CryptoMode) -> Self {
        Self {
            mode,
            keys: BTreeMap::new(),
        }
    }

    /// Makes `count` one-time prekeys with ids `first_id..first_id + count`, drawing one KEM
    /// seed per key in id order.
    ///
    /// # Errors
    /// [`SessionError::Malformed`] for `count` over [`MAX_ONE_TIME_BATCH`] or ids past `u32`;
    /// RNG failures.
    pub fn generate(
        mode: CryptoMode,
        first_id: u32,
        count: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        if count > MAX_ONE_TIME_BATCH || first_id.checked_add(count).is_none() {
            return Err(CryptoError::TooLarge {
                what: "one-time prekey batch",
                max: MAX_ONE_TIME_BATCH as usize,
                got: count as usize,
            }
            .into());
        }
        let mut keys = BTreeMap::new();
        for id in first_id..first_id + count {
            let kp = KemKeyPair::generate(mode, rng)?;
            let public = OneTimePrekey {
                mode,
                id,
                key: kp.public_key(),
            };
            keys.insert(id, (kp, public));
        }
        Ok(Self { mode, keys })
    }

    /// A held secret and its public half, as [`Self::keys`] stores them.
    pub(super) fn entry(
        mode: CryptoMode,
        id: u32,
        kp: KemKeyPair,
    ) -> (u32, (KemKeyPair, OneTimePrekey)) {
        let public = OneTimePrekey {
            mode,
            id,
            key: kp.public_key(),
        };
        (id, (kp, public))
    }

    /// The mode.
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }

    /// The public halves, in id order.
    pub fn publics(&self) -> impl Iterator<Item = &OneTimePrekey> {
        self.keys.values().map(|(_, p)| p)
    }

    /// The public halves as one batch (what to certify and upload).
    ///
    /// # Errors
    /// As [`OneTimeBatch::new`]: none held, or more than [`MAX_ONE_TIME_BATCH`].
    pub fn batch(&self) -> Result<OneTimeBatch> {
        OneTimeBatch::new(self.publics().cloned().collect())
    }

    /// How many secrets are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds another set of the same mode (ids already held are kept as they are).
    pub fn merge(&mut self, other: OneTimePrekeys) {
        for (id, v) in other.keys {
            self.keys.entry(id).or_insert(v);
        }
    }

    pub(crate) fn get(&self, id: u32) -> Option<&KemKeyPair> {
        self.keys.get(&id).map(|(k, _)| k)
    }

    /// Deletes a used secret.
    pub(crate) fn remove(&mut self, id: u32) {
        self.keys.remove(&id);
    }
}
