//! The one-time prekey supply (PROTOCOL.md §14.13): at registration and whenever the relay's
//! `auth_ok` says a mode runs low, new prekeys are generated, their secrets saved, and their
//! public records uploaded. [`plan`] decides and touches only the store; the upload goes
//! through the connection.

use std::sync::Arc;
use std::time::Duration;

use nano_crypto::session::{OneTimePrekeys, PrekeySecrets, SignedPrekeySecrets};
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
/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The uploads that bring every mode of `modes` to `target` one-time prekeys on the relay,
/// given the relay's `counts` (`None`: it holds none of ours): new secrets are generated and
/// saved in `store` first. A mode without prekey secrets gets signed prekeys (id 1) too, and
/// replaces the one-time prekeys the relay holds (their secrets are not here); a
/// mode that runs low gets its current signed prekeys uploaded again with the new one-time
/// prekeys (the relay keeps one record per id).
///
/// # Errors
/// Key generation and the store's.
pub(crate) fn plan(
    identity: &Identity,
    store: &dyn Store,
    modes: &[CryptoMode],
    counts: Option<PrekeyCounts>,
    target: u64,
) -> Result<Vec<ClientFrame>> {
    let mut frames = Vec::new();
    for &mode in modes {
        let held = counts.map_or(0, |c| c.get(mode));
        // Load, add and save as one step: a handshake answered meanwhile (by this process or
        // another on the same store) deletes its one-time secret, and that must not come back.
        let _locked = store.lock()?;
        let mut secrets = store.load_prekeys(mode)?;
        if secrets.is_some() && held >= target.div_ceil(4) {
            continue;
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
            identity,
            mode,
            first_id(secrets.as_ref(), target),
            u32::try_from(wanted).unwrap_or(0),
            &mut OsRng,
        )
        .map_err(|e| ClientError::Invalid(format!("prekey generation: {e}")))?;
        let publics: Vec<Bytes> = batch.publics().map(|p| Bytes(p.to_bytes())).collect();
        let secrets = match secrets.take() {
            Some(mut s) => {
                s.add_one_time(batch);
                s
            }
            None => {
                let signed = SignedPrekeySecrets::generate(identity, mode, 1, &mut OsRng)
                    .map_err(|e| ClientError::Invalid(format!("prekey generation: {e}")))?;
                PrekeySecrets::new(signed, batch)
                    .map_err(|e| ClientError::Invalid(format!("prekeys: {e}")))?
            }
        };
        // Saved before anything is published: a handshake can only use what is stored.
        store.store_prekeys(&secrets)?;
        let signed = secrets
            .current()
            .map(|s| Bytes(s.public().to_bytes()))
            .ok_or_else(|| ClientError::Invalid("prekeys without signed prekeys".into()))?;
        let mut chunks = publics.chunks(MAX_PREKEYS_PER_UPLOAD);
        frames.push(ClientFrame::UploadPrekeys {
            crypto_mode: mode,
            signed_prekeys: Some(signed),
            one_time_prekeys: chunks.next().map(<[Bytes]>::to_vec).unwrap_or_default(),
            replace_one_time: fresh,
        });
        frames.extend(chunks.map(|c| ClientFrame::UploadPrekeys {
            crypto_mode: mode,
            signed_prekeys: None,
            one_time_prekeys: c.to_vec(),
            replace_one_time: false,
        }));
    }
    Ok(frames)
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

/// Tops up every mode as [`plan`] says and uploads, one at a time, updating the counts.
///
/// # Errors
/// As [`plan`] and [`request`]; an unexpected answer is [`ClientError::Protocol`].
pub(crate) async fn publish(shared: &Arc<Shared>) -> Result<()> {
    let _one_at_a_time = shared.publishing.lock().await;
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
            )
        })
        .await
        .map_err(|_| ClientError::Invalid("prekey generation stopped".into()))??
    };
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
    Ok(())
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
