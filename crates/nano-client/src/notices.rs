//! Session notices (PROTOCOL.md §14.14): a receiver that cannot read a session payload (its
//! session or prekey secrets lost: a fresh home, a restored backup) tells the sender, sealed to
//! it; the sender drops the session the receiver no longer holds, reports the lost message, and
//! its next message starts a new session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nano_crypto::envelope::{SealParams, seal_with};
use nano_crypto::{CryptoMode, OsRng, PublicBundle};
use nano_proto::notice::{Notice, wrap};
use nano_proto::{ClientFrame, MessageId, Payload, Username};
use rand_core::RngCore;
use tokio::sync::oneshot;

use crate::client::{SEND_TIMEOUT, Shared, preferred_aead};
use crate::connection::Command;
use crate::error::{ClientError, Result};

/// At most one notice per contact and mode this often: a burst of unreadable messages (a
/// whole backlog on a lost session) costs the sender one new session, not one per message.
pub(crate) const NOTICE_INTERVAL: Duration = Duration::from_secs(60);

/// Contacts and modes remembered for [`NOTICE_INTERVAL`]; the oldest are forgotten beyond.
const MAX_REMEMBERED: usize = 1024;

/// When this client last sent a notice to each contact, per mode.
#[derive(Debug, Default)]
pub(crate) struct Notified(HashMap<(String, CryptoMode), Instant>);

impl Notified {
    /// Whether a notice to `peer` about `mode` may go at `now`; if so, it is recorded.
    pub(crate) fn allow(&mut self, peer: &str, mode: CryptoMode, now: Instant) -> bool {
        let key = (peer.to_owned(), mode);
        if self
            .0
            .get(&key)
            .is_some_and(|t| now.saturating_duration_since(*t) < NOTICE_INTERVAL)
        {
            return false;
        }
        if self.0.len() >= MAX_REMEMBERED {
            self.0
                .retain(|_, t| now.saturating_duration_since(*t) < NOTICE_INTERVAL);
            if self.0.len() >= MAX_REMEMBERED
                && let Some(oldest) = self
                    .0
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(key, now);
        true
    }
}

/// Seals `notice` to `peer` (whose identity is `bundle`) in the notice's mode and sends it
/// through the connection, in the background; a failure is logged, never shown (the lost
/// message itself was reported to the application).
pub(crate) fn send(shared: &Arc<Shared>, peer: String, bundle: Arc<PublicBundle>, notice: Notice) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if let Err(e) = seal_and_send(&shared, &peer, bundle, notice).await {
            tracing::debug!(error = %e, mode = %notice.mode, "session notice not sent");
        }
    });
}

async fn seal_and_send(
    shared: &Arc<Shared>,
    peer: &str,
    bundle: Arc<PublicBundle>,
    notice: Notice,
) -> Result<()> {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let params = SealParams {
        mode: notice.mode,
        aead: preferred_aead(),
        message_id: id,
        timestamp_ms: nano_proto::now_ms(),
    };
    let identity = Arc::clone(&shared.identity);
    let envelope = tokio::task::spawn_blocking(move || {
        seal_with(&identity, &bundle, &notice.to_bytes(), params, &mut OsRng)
    })
    .await
    .map_err(|_| ClientError::Invalid("notice sealing stopped".into()))??;
    let frame = ClientFrame::SendMessage {
        recipient: Username::new(peer)?,
        message: Payload(wrap(notice.mode, &envelope)),
        crypto_mode: notice.mode,
        id: None,
    };
    let (reply, answer) = oneshot::channel();
    shared
        .commands()
        .ok_or(ClientError::Closed)?
        .send(Command::Send {
            id: MessageId(id),
            frame,
            reply,
        })
        .await
        .map_err(|_| ClientError::Closed)?;
    tokio::time::timeout(SEND_TIMEOUT, answer)
        .await
        .map_err(|_| ClientError::Timeout("waiting for the relay to store the notice"))?
        .map_err(|_| ClientError::Closed)??;
    Ok(())
}

/// Acts on a notice from `peer` that opened (sealed at `sealed_ms`, its authenticated time):
/// drops the sessions with `peer` in the notice's mode that started before it, so the next
/// message starts a new one. Returns how many were dropped.
///
/// # Errors
/// The store's.
pub(crate) async fn received(
    shared: &Arc<Shared>,
    peer: &str,
    notice: Notice,
    sealed_ms: u64,
) -> Result<usize> {
    let peer = peer.to_owned();
    shared
        .sessions
        .run(true, move |s| s.forget(&peer, notice.mode, sealed_ms))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_contact_and_mode_per_interval() {
        let mut n = Notified::default();
        let t0 = Instant::now();
        assert!(n.allow("bob", CryptoMode::Hybrid, t0));
        assert!(!n.allow("bob", CryptoMode::Hybrid, t0 + Duration::from_secs(59)));
        assert!(n.allow("bob", CryptoMode::Quantum, t0));
        assert!(n.allow("carol", CryptoMode::Hybrid, t0));
        assert!(n.allow("bob", CryptoMode::Hybrid, t0 + NOTICE_INTERVAL));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut n = Notified::default();
        let t0 = Instant::now();
        for i in 0..MAX_REMEMBERED + 10 {
            assert!(n.allow(&format!("user{i}"), CryptoMode::Classical, t0));
        }
        assert!(n.0.len() <= MAX_REMEMBERED);
        // The newest are still remembered.
        let last = format!("user{}", MAX_REMEMBERED + 9);
        assert!(!n.allow(&last, CryptoMode::Classical, t0));
    }
}
