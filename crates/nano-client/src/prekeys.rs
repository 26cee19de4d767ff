//! The one-time prekey supply (PROTOCOL.md §14.13): at registration and whenever the relay's
//! `auth_ok` says a mode runs low, new prekeys are generated, their secrets saved, and their
//! public records uploaded. [`plan`] decides and touches only the store; the upload goes
//! through the connection.

use std::sync::Arc;
use std::time::Duration;

use nano_crypto::session::{
    OneTimeBatch, OneTimePrekey, OneTimePrekeys, PrekeySecrets, SignedPrekeySecrets,
};
use nano_crypto::{CryptoMode, Identity, OsRng};
use nano_proto::frames::MAX_PREKEYS_PER_UPLOAD;
use nano_proto::{Bytes, ClientFrame, PrekeyCounts, RelayFrame};
use rand_core::RngCore;

use crate::client::Shared;
use crate::connection::Command;
use crate::error::{ClientError, Result};
use crate::store::Store;

/// What a top-up brings a mode to by default ([`crate::client::ClientConfig::one_time_prekeys`]);
/// a mode with fewer than a quarter of its target left on the relay is topped up.
pub const TOP_UP: u64 = 100;
/// Days a signed-prekeys record is current before the next login replaces it.
pub const ROTATE_AFTER_DAYS: u32 = 7;
/// Earlier signed-prekeys records whose secrets are kept after a rotation (the relay keeps the
/// newest 4 records), so a handshake made against a bundle fetched before it still completes:
/// a grace period of at least 3 × [`ROTATE_AFTER_DAYS`].
pub const KEEP_PREVIOUS: usize = 3;

/// Today's number: days since the Unix epoch (UTC). Signed-prekeys records are numbered by the
/// day they were made, so their age is known from their id.
pub(crate) fn today() -> u32 {
    u32::try_from(nano_proto::now_ms() / 86_400_000).unwrap_or(u32::MAX)
}

/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The uploads that bring every mode of `modes` to `target` one-time prekeys on the relay,
/// given the relay's `counts` (`None`: it holds none of ours): new secrets are generated and
/// saved in `store` first. A mode without prekey secrets gets signed prekeys (id `today`, the
/// day number) too, and replaces the one-time prekeys the relay holds (their secrets are not
/// here); a mode whose current signed prekeys are [`ROTATE_AFTER_DAYS`] old gets new ones (id
/// `today`), keeping [`KEEP_PREVIOUS`] earlier ones. New one-time prekeys go up in batches of
/// at most [`MAX_PREKEYS_PER_UPLOAD`], each with the current signed prekeys signed again over
/// the batch's Merkle root (the relay keeps the newest record per id, and each batch's own).
///
/// # Errors
/// Key generation and the store's.
pub(crate) fn plan(
    identity: &Identity,
    store: &dyn Store,
    modes: &[CryptoMode],
    counts: Option<PrekeyCounts>,
    target: u64,
    today: u32,
) -> Result<Vec<ClientFrame>> {
    let mut frames = Vec::new();
    for &mode in modes {
        let held = counts.map_or(0, |c| c.get(mode));
        // Load, add and save as one step: a handshake answered meanwhile (by this process or
        // another on the same store) deletes its one-time secret, and that must not come back.
        let _locked = store.lock()?;
        store.update_prekeys(mode, &mut |slot| {
            top_up(identity, mode, slot, held, target, today, &mut frames)
        })?;
    }
    Ok(frames)
}

/// [`plan`] for one mode: tops `secrets` up (creating them if `None`) and pushes the uploads
/// onto `frames`; whether anything changed.
fn top_up(
    identity: &Identity,
    mode: CryptoMode,
    secrets: &mut Option<PrekeySecrets>,
    held: u64,
    target: u64,
    today: u32,
    frames: &mut Vec<ClientFrame>,
) -> Result<bool> {
    let rotate = secrets
        .as_ref()
        .and_then(PrekeySecrets::current)
        .is_some_and(|c| c.id().saturating_add(ROTATE_AFTER_DAYS) <= today);
    if secrets.is_some() && held >= target.div_ceil(4) && !rotate {
        return Ok(false);
    }
    // No secrets here (a new device, a fresh home, a restored backup): whatever the relay
    // holds was made elsewhere and cannot be answered, so it is replaced.
    let fresh = secrets.is_none();
    let wanted = if fresh {
        target
    } else {
        target.saturating_sub(held)
    };
    let batch = OneTimePrekeys::generate(
        mode,
        first_id(secrets.as_ref(), target),
        u32::try_from(wanted).unwrap_or(0),
        &mut OsRng,
    )
    .map_err(|e| ClientError::Invalid(format!("prekey generation: {e}")))?;
    let publics: Vec<OneTimePrekey> = batch.publics().cloned().collect();
    let updated = match secrets.take() {
        Some(mut s) => {
            // Rotated first: the new prekeys belong to the record that certifies them.
            if rotate {
                let rotated = SignedPrekeySecrets::generate(mode, today, &mut OsRng)
                    .map_err(|e| ClientError::Invalid(format!("prekey generation: {e}")))
                    .and_then(|next| {
                        s.rotate(next, KEEP_PREVIOUS)
                            .map_err(|e| ClientError::Invalid(format!("prekey rotation: {e}")))
                    });
                if let Err(e) = rotated {
                    // Left as they were.
                    *secrets = Some(s);
                    return Err(e);
                }
            }
            s.add_one_time(batch);
            s
        }
        None => {
            let signed = SignedPrekeySecrets::generate(mode, today, &mut OsRng)
                .map_err(|e| ClientError::Invalid(format!("prekey generation: {e}")))?;
            PrekeySecrets::new(signed, batch)
                .map_err(|e| ClientError::Invalid(format!("prekeys: {e}")))?
        }
    };
    // A signing failure below leaves these secrets with unpublished additions: harmless, the
    // next top-up publishes under the current record.
    let current = secrets.insert(updated).current();
    let current =
        current.ok_or_else(|| ClientError::Invalid("prekeys without signed prekeys".into()))?;
    // One upload per batch, each with the current record signed over the batch's root. The
    // secrets are saved (when this returns) before any of it is published: a handshake can
    // only use what is stored.
    let mut batches: Vec<&[OneTimePrekey]> = publics.chunks(MAX_PREKEYS_PER_UPLOAD).collect();
    if batches.is_empty() {
        batches.push(&[]);
    }
    for (i, chunk) in batches.into_iter().enumerate() {
        let batch = (!chunk.is_empty())
            .then(|| OneTimeBatch::new(chunk.to_vec()))
            .transpose()
            .map_err(|e| ClientError::Invalid(format!("prekeys: {e}")))?;
        let record = current
            .certify(identity, batch.as_ref(), &mut OsRng)
            .map_err(|e| ClientError::Invalid(format!("prekey signing: {e}")))?;
        frames.push(ClientFrame::UploadPrekeys {
            crypto_mode: mode,
            signed_prekeys: Some(Bytes(record.to_bytes())),
            one_time_prekeys: chunk.iter().map(|p| Bytes(p.to_bytes())).collect(),
            replace_one_time: fresh && i == 0,
        });
    }
    Ok(true)
}

/// Ids of a new batch: a random start, so a new key never takes the id of one the relay has
/// handed out and whose handshake is still on its way.
fn first_id(held: Option<&PrekeySecrets>, count: u64) -> u32 {
    loop {
        let first = (OsRng.next_u32() >> 1).max(1);
        let end = first.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        let clash = held.is_some_and(|s| {
            s.one_time()
                .publics()
                .any(|p| (first..end).contains(&p.id()))
        });
        if !clash {
            return first;
        }
    }
}

/// Sends `frame` as a request on the connection and waits for its answer.
///
/// # Errors
/// The relay's `error`, a lost connection (retryable), or the wait running out.
pub(crate) async fn request(shared: &Shared, frame: ClientFrame) -> Result<RelayFrame> {
    // A task that stopped for good says why (a relay identity change, a TLS proxy).
    let commands = shared.commands().ok_or_else(|| shared.closed())?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    commands
        .send(Command::Request { frame, reply })
        .await
        .map_err(|_| shared.closed())?;
    tokio::time::timeout(REQUEST_TIMEOUT, rx)
        .await
        .map_err(|_| ClientError::Timeout("waiting for the relay's answer"))?
        .map_err(|_| shared.closed())?
}

/// The modes this user publishes prekeys in: its own, at or above the relay's floor.
fn modes(shared: &Shared) -> Vec<CryptoMode> {
    shared
        .identity
        .public_bundle()
        .modes()
        .filter(|m| *m >= shared.relay.minimum_crypto_mode)
        .collect()
}

/// Tops up every mode as [`plan`] says and uploads, one at a time, updating the counts; then
/// once more if the relay's answers show a mode still low (a rotation that made the relay drop
/// the batches of the record it no longer keeps).
///
/// # Errors
/// As [`plan`] and [`request`]; an unexpected answer is [`ClientError::Protocol`].
pub(crate) async fn publish(shared: &Arc<Shared>) -> Result<()> {
    let _one_at_a_time = shared.publishing.lock().await;
    for _ in 0..2 {
        if !publish_once(shared).await? {
            break;
        }
    }
    Ok(())
}

/// One round of [`publish`]; whether anything was uploaded.
async fn publish_once(shared: &Arc<Shared>) -> Result<bool> {
    let counts = *shared
        .prekey_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let planned = {
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || {
            plan(
                &shared.identity,
                shared.sessions.store().as_ref(),
                &modes(&shared),
                counts,
                shared.one_time_prekeys,
                today(),
            )
        })
        .await
        .map_err(|_| ClientError::Invalid("prekey generation stopped".into()))??
    };
    let uploaded = !planned.is_empty();
    for frame in planned {
        match request(shared, frame).await? {
            RelayFrame::PrekeysUploaded {
                crypto_mode,
                one_time_prekeys,
            } => {
                let mut c = shared
                    .prekey_counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                c.get_or_insert_default().set(crypto_mode, one_time_prekeys);
            }
            f => {
                return Err(ClientError::Protocol(format!(
                    "expected prekeys_uploaded, got {}",
                    f.type_name()
                )));
            }
        }
    }
    Ok(uploaded)
}

/// After a login: remembers the relay's counts and tops up in the background.
pub(crate) fn replenish_in_background(shared: &Arc<Shared>, counts: Option<PrekeyCounts>) {
    *shared
        .prekey_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = counts;
    if !shared.publish_prekeys {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if let Err(e) = publish(&shared).await {
            tracing::debug!(error = %e, "prekeys not topped up now; next login tries again");
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::store::{MemoryStore, PrekeyStore};

    fn signed_id(frame: &ClientFrame) -> Option<u32> {
        match frame {
            ClientFrame::UploadPrekeys {
                signed_prekeys: Some(b),
                ..
            } => Some(
                nano_crypto::session::SignedPrekeys::from_bytes(b.as_slice())
                    .unwrap()
                    .id(),
            ),
            _ => None,
        }
    }

    fn counts(mode: CryptoMode, n: u64) -> Option<PrekeyCounts> {
        let mut c = PrekeyCounts::default();
        c.set(mode, n);
        Some(c)
    }

    #[test]
    fn a_top_up_goes_up_in_batches_each_under_a_record_that_covers_it() {
        use nano_crypto::session::{OneTimeBatch, OneTimePrekey, SignedPrekeys};
        let mode = CryptoMode::Hybrid;
        let id = Identity::generate(mode, &mut OsRng).unwrap();
        let store = MemoryStore::new();
        let frames = plan(&id, &store, &[mode], None, 60, 20_000).unwrap();
        let mut sizes = Vec::new();
        let mut ids = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let ClientFrame::UploadPrekeys {
                signed_prekeys: Some(record),
                one_time_prekeys,
                replace_one_time,
                ..
            } = f
            else {
                panic!("expected an upload with a record, got {f:?}");
            };
            // Only the first upload replaces what the relay held.
            assert_eq!(*replace_one_time, i == 0);
            let record = SignedPrekeys::from_bytes(record.as_slice()).unwrap();
            record.verify(id.public_bundle()).unwrap();
            let batch = OneTimeBatch::new(
                one_time_prekeys
                    .iter()
                    .map(|b| OneTimePrekey::from_bytes(b.as_slice()).unwrap())
                    .collect(),
            )
            .unwrap();
            assert!(record.covers(&batch), "upload {i}");
            sizes.push(batch.len());
            ids.extend(batch.prekeys().iter().map(OneTimePrekey::id));
        }
        assert_eq!(sizes, [25, 25, 10]);
        // Every uploaded prekey's secret is in the store.
        let secrets = store.load_prekeys(mode).unwrap().unwrap();
        let held: Vec<u32> = secrets
            .one_time()
            .publics()
            .map(OneTimePrekey::id)
            .collect();
        assert_eq!(held, ids);
    }

    #[test]
    fn signed_prekeys_are_made_today_and_rotated_after_a_week() {
        let mode = CryptoMode::Classical;
        let id = Identity::generate(mode, &mut OsRng).unwrap();
        let store = MemoryStore::new();
        let day = 20_000;
        // A fresh store: signed prekeys numbered by the day, one-time prekeys replacing the
        // relay's.
        let frames = plan(&id, &store, &[mode], None, 8, day).unwrap();
        assert_eq!(signed_id(&frames[0]), Some(day));
        assert!(matches!(
            frames[0],
            ClientFrame::UploadPrekeys {
                replace_one_time: true,
                ..
            }
        ));
        // Enough on the relay, six days later: nothing to do.
        assert!(
            plan(&id, &store, &[mode], counts(mode, 8), 8, day + 6)
                .unwrap()
                .is_empty()
        );
        // A week later: new signed prekeys, the old ones kept for handshakes in flight.
        let frames = plan(&id, &store, &[mode], counts(mode, 8), 8, day + 7).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(signed_id(&frames[0]), Some(day + 7));
        let secrets = store.load_prekeys(mode).unwrap().unwrap();
        assert_eq!(secrets.current().unwrap().id(), day + 7);
        assert!(secrets.signed(day).is_some());
        // After KEEP_PREVIOUS more rotations the first is gone.
        for k in 2..=(KEEP_PREVIOUS as u32 + 1) {
            plan(&id, &store, &[mode], counts(mode, 8), 8, day + 7 * k).unwrap();
        }
        let secrets = store.load_prekeys(mode).unwrap().unwrap();
        assert!(secrets.signed(day).is_none());
        assert!(secrets.signed(day + 7).is_some());
    }
}
