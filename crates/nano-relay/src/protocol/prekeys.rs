//! `upload_prekeys` and `get_prekeys` (PROTOCOL.md §14.13): the prekey service.
//!
//! An upload comes from an authenticated connection, so it is the user's own; each record is
//! still checked (decoding checks key validity, the signature is verified under the user's
//! identity key of the mode) before it is stored, so the relay never serves a record its owner
//! did not sign, and one-time prekeys are stored only as the batch its root covers. A `get_prekeys` hands out one one-time prekey, taken atomically from the
//! database, while the requester is within `security.prekey_claims_per_second`; otherwise, or
//! when none is left, the bundle carries the last-resort prekey alone.

use std::sync::Arc;

use nano_crypto::session::{
    OneTimeBatch, OneTimeInclusion, OneTimePrekey, PrekeyBundle, SessionError, SignedPrekeys,
};
use nano_crypto::{CryptoMode, PublicBundle};
use nano_proto::{Bytes, ProtoError, RelayFrame, Username};

use crate::error::RelayError;
use crate::storage::prekeys::{MAX_ONE_TIME_HELD, MAX_SIGNED_RECORDS};
use crate::storage::{Claimed, OneTimeRows, SignedRecord};

use super::Session;

/// `(prekey id, OneTimeInclusion::to_bytes)` of each one-time prekey of a batch.
type ServedRows = Vec<(u32, Vec<u8>)>;

/// An upload whose every record decoded and verified.
struct Verified {
    signed: Option<(u32, Vec<u8>)>,
    /// The batch: its id (first prekey id) and each prekey's served form.
    one_time: Option<(u32, ServedRows)>,
}

/// A record's mode must be the upload's.
fn same_mode(mode: CryptoMode, got: CryptoMode) -> Result<(), RelayError> {
    if got == mode {
        Ok(())
    } else {
        Err(RelayError::Prekey(SessionError::ModeMismatch {
            expected: mode,
            got,
        }))
    }
}

/// Decodes every record of an upload, verifies the signed-prekeys record under `owner` and
/// checks that its root covers the one-time prekeys exactly (crypto pool).
fn verify_upload(
    owner: &PublicBundle,
    mode: CryptoMode,
    signed: Option<Bytes>,
    one_time: Vec<Bytes>,
) -> Result<Verified, RelayError> {
    let signed = signed
        .map(|b| {
            let s = SignedPrekeys::from_bytes(b.as_slice()).map_err(RelayError::Prekey)?;
            same_mode(mode, s.mode())?;
            s.verify(owner).map_err(RelayError::Prekey)?;
            Ok::<_, RelayError>((s, b.0))
        })
        .transpose()?;
    let one_time = if one_time.is_empty() {
        None
    } else {
        let prekeys = one_time
            .iter()
            .map(|b| {
                let p = OneTimePrekey::from_bytes(b.as_slice()).map_err(RelayError::Prekey)?;
                same_mode(mode, p.mode())?;
                Ok(p)
            })
            .collect::<Result<Vec<_>, RelayError>>()?;
        let batch = OneTimeBatch::new(prekeys).map_err(RelayError::Prekey)?;
        let (record, _) = signed.as_ref().ok_or_else(|| {
            RelayError::Proto(ProtoError::InvalidField {
                field: "signed_prekeys",
                reason: "one-time prekeys come with the signed-prekeys record that certifies them"
                    .into(),
            })
        })?;
        if !record.covers(&batch) {
            return Err(RelayError::Prekey(SessionError::BadPrekeySignature));
        }
        let rows = batch
            .inclusions()
            .map(|i| (i.prekey().id(), i.to_bytes()))
            .collect();
        Some((batch.prekeys()[0].id(), rows))
    };
    Ok(Verified {
        signed: signed.map(|(s, bytes)| (s.id(), bytes)),
        one_time,
    })
}

/// A bundle of stored records (already verified at upload; decoded again so a corrupt row is
/// never served): the newest record alone, or a claimed one-time prekey with its batch's
/// record.
fn assemble(signed: &[u8], claimed: Option<&Claimed>) -> Result<Vec<u8>, RelayError> {
    let corrupt = |e: SessionError| RelayError::Corrupt(format!("stored prekey record: {e}"));
    let bundle = match claimed {
        None => PrekeyBundle::new(SignedPrekeys::from_bytes(signed).map_err(corrupt)?, None),
        Some(c) => {
            let record = SignedPrekeys::from_bytes(&c.record).map_err(corrupt)?;
            let one_time = OneTimeInclusion::from_bytes(&c.one_time, record.one_time_count())
                .map_err(corrupt)?;
            PrekeyBundle::new(record, Some(one_time))
        }
    };
    Ok(bundle.map_err(corrupt)?.to_bytes())
}

impl Session {
    pub(super) async fn upload_prekeys(
        &mut self,
        mode: CryptoMode,
        signed: Option<Bytes>,
        one_time: Vec<Bytes>,
        replace: bool,
    ) -> Vec<RelayFrame> {
        match self
            .upload_prekeys_inner(mode, signed, one_time, replace)
            .await
        {
            Ok(f) => vec![f],
            Err(e) => vec![self.err(&e, None)],
        }
    }

    async fn upload_prekeys_inner(
        &mut self,
        mode: CryptoMode,
        signed: Option<Bytes>,
        one_time: Vec<Bytes>,
        replace: bool,
    ) -> Result<RelayFrame, RelayError> {
        let user = self.require_user()?;
        let (uid, name) = (user.id, user.name.as_str().to_owned());
        self.check_mode(mode)?;
        let owner = self.shared.user(&name).await?.ok_or(RelayError::NotFound)?;
        let owner = self.shared.decoded(owner).await?;
        let verified = self
            .shared
            .crypto
            .run(move || verify_upload(owner.bundle()?, mode, signed, one_time))
            .await??;
        let now_ms = i64::try_from(nano_proto::now_ms()).unwrap_or(i64::MAX);
        let held = self
            .shared
            .blocking(move |s| {
                if let Some((prekey_id, record)) = &verified.signed {
                    s.directory.put_signed_prekeys(
                        &name,
                        &SignedRecord {
                            user_id: uid,
                            mode,
                            prekey_id: *prekey_id,
                            record,
                            now_ms,
                            keep_previous: MAX_SIGNED_RECORDS - 1,
                        },
                    )?;
                }
                let held = if replace {
                    0
                } else {
                    s.storage.one_time_prekey_count(uid, mode)?
                };
                let adding = verified.one_time.as_ref().map_or(0, |(_, rows)| rows.len());
                if adding == 0 && !replace {
                    return Ok(held);
                }
                if held + adding as u64 > MAX_ONE_TIME_HELD {
                    return Err(RelayError::Proto(ProtoError::InvalidField {
                        field: "one_time_prekeys",
                        reason: format!(
                            "a user holds at most {MAX_ONE_TIME_HELD} one-time prekeys per mode"
                        ),
                    }));
                }
                let rows = match (&verified.one_time, &verified.signed) {
                    (Some((batch_id, prekeys)), Some((signed_id, record))) => Some(OneTimeRows {
                        batch_id: *batch_id,
                        signed_id: *signed_id,
                        record,
                        prekeys,
                    }),
                    _ => None,
                };
                s.storage
                    .add_one_time_prekeys(uid, mode, rows.as_ref(), replace, now_ms)
            })
            .await?;
        Ok(RelayFrame::PrekeysUploaded {
            crypto_mode: mode,
            one_time_prekeys: held,
        })
    }

    /// Answers `get_prekeys` (`contact` false: the prekey bundle, `no_prekeys` when there is
    /// none) or `get_contact` (`contact` true: the identity bundle beside the prekey bundle,
    /// if there is one).
    pub(super) async fn get_prekeys(
        &mut self,
        username: Username,
        mode: CryptoMode,
        contact: bool,
    ) -> Vec<RelayFrame> {
        let answer = self.claim(username, mode, contact).await.and_then(|c| {
            let username = Username::new(&c.name)?;
            Ok(match c.identity {
                Some(identity) => RelayFrame::Contact {
                    username,
                    crypto_mode: mode,
                    identity: Bytes(identity),
                    bundle: c.bundle.map(Bytes),
                },
                None => RelayFrame::PrekeyBundle {
                    username,
                    crypto_mode: mode,
                    bundle: Bytes(c.bundle.ok_or(RelayError::NoPrekeys)?),
                },
            })
        });
        match answer {
            Ok(f) => vec![f],
            Err(e) => vec![self.err(&e, None)],
        }
    }

    /// `username`'s prekey bundle of `mode` (a one-time prekey claimed for another user within
    /// the claim rate; `None` when it has published none of the mode), with its canonical name
    /// and, with `identity`, its identity bundle.
    ///
    /// # Errors
    /// `NotFound`, `ModeNotAllowed` (below the relay's or the user's floor), storage errors.
    async fn claim(
        &mut self,
        username: Username,
        mode: CryptoMode,
        identity: bool,
    ) -> Result<Claim, RelayError> {
        let requester = self.require_user()?.id;
        self.check_mode(mode)?;
        let shared = Arc::clone(&self.shared);
        shared
            .blocking(move |s| {
                let entry = s
                    .directory
                    .lookup(username.as_str())?
                    .ok_or(RelayError::NotFound)?;
                mode.at_least(entry.record.min_mode)?;
                let identity = identity.then(|| entry.record.bundle.clone());
                let name = entry.record.username.clone();
                let Some(signed) = s.directory.signed_prekeys(&entry.record, mode)? else {
                    return Ok(Claim {
                        name,
                        identity,
                        bundle: None,
                    });
                };
                // Nobody needs a one-time prekey of their own; over the claim rate the
                // last-resort prekey serves, so one requester cannot drain them.
                let owner = entry.record.id;
                let one_time = if owner != requester && s.claim_allowed(requester) {
                    s.storage.claim_one_time_prekey(owner, mode)?
                } else {
                    None
                };
                s.metrics.prekey_claim(one_time.is_some());
                Ok(Claim {
                    name,
                    identity,
                    bundle: Some(assemble(&signed, one_time.as_ref())?),
                })
            })
            .await
    }
}

/// What [`Session::claim`] found.
struct Claim {
    /// The user's canonical name.
    name: String,
    /// Its encoded identity bundle, when asked for.
    identity: Option<Vec<u8>>,
    /// Its prekey bundle of the mode asked for, if it has published one.
    bundle: Option<Vec<u8>>,
}
