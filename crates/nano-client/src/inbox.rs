//! The inbox: what a client does with the messages the relay pushes, in order. Each is checked
//! against its clear header, its sender's trusted key fetched, and it is opened: envelopes of a
//! backlog page with one batch verification (§6, §8), session payloads through the session
//! store (§14), notices acted on (§14.14). Each id is handed to the application once; an id
//! shown and acknowledged before whose ack was lost is acknowledged again; a session message
//! ahead of its handshake is parked. Sockets stay in the connection task: this module returns
//! what to write.

use std::sync::Arc;
use std::time::Instant;

use nano_crypto::{CryptoMode, Envelope, PublicBundle, open_many};
use nano_proto::MessageId;
use tokio::sync::mpsc;

use crate::client::{Incoming, Received, Shared, Unverifiable};
use crate::contacts::BoundedSet;
use crate::error::{ClientError, Result};
use crate::parked::Parked;

/// What the inbox remembers across pushes on one client (the parked set only for one
/// connection: what is parked is unacknowledged, and delivered again after a reconnect).
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Ids handed to the application.
    pub(crate) seen: BoundedSet<MessageId>,
    /// Ids the application acknowledged.
    pub(crate) acked: BoundedSet<MessageId>,
    /// Session notices sent lately (§14.14), so a backlog on a lost session costs one.
    pub(crate) notified: crate::notices::Notified,
    /// Session messages waiting for their session's handshake.
    pub(crate) parked: Parked<Waiting>,
}

/// A `message` frame's fields. `Debug` shows the payload's length only.
pub(crate) struct Pushed {
    pub(crate) id: MessageId,
    pub(crate) sender: Option<String>,
    pub(crate) timestamp_ms: u64,
    pub(crate) message: nano_proto::Payload,
    /// When it was first parked (a session message tried again), if it was.
    pub(crate) parked_since: Option<Instant>,
}

impl std::fmt::Debug for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushed")
            .field("id", &self.id)
            .field("sender", &self.sender)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("len", &self.message.len())
            .finish_non_exhaustive()
    }
}

/// A parked session message, its sender and the sender's trusted bundle.
type Waiting = (Pushed, String, Arc<PublicBundle>);

/// What became of one message of a batch, in inbox order.
enum Slot {
    /// Ready to open: index into the batch handed to `open_many`.
    /// Ready to open: index into the batch handed to `open_many`; whether the envelope is
    /// a session notice's (§14.14).
    Open(Pushed, usize, bool),
    /// Refused before opening.
    Refused(Pushed, ClientError),
    /// Test traffic that cannot be verified.
    Unverifiable(Pushed, Unverifiable),
    /// A session payload from a known sender, opened in inbox order (sessions are ordered).
    Session(Pushed, String, Arc<PublicBundle>),
}

/// Failures that later attempts may not repeat: the message is left for the next connection.
fn transient(e: &ClientError) -> bool {
    e.is_retryable()
        || matches!(
            e,
            ClientError::Closed
            // A relay that is busy or answering garbage now may answer later: the message
            // stays in the inbox rather than being refused (and acknowledged away). `internal`
            // is a permanent fault of the relay (e.g. a corrupt stored bundle): not retried.
            | ClientError::Protocol(_)
        )
}

/// Verifies, decrypts and hands `msgs` to the application in order, each id once. A message
/// that can never be opened comes out as [`ClientError::Rejected`]; one from a sender whose key
/// is not trusted as [`ClientError::ContactKeyChanged`]. Parked session messages whose wait is
/// over are tried a last time first; those of a sender whose handshake opens are tried again
/// after it.
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    st: &mut Inbox,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
) -> Vec<MessageId> {
    let unpark = |v: Vec<(Waiting, Instant)>| {
        v.into_iter().map(|((mut p, _, _), since)| {
            p.parked_since = Some(since);
            p
        })
    };
    let mut batch: Vec<Pushed> = unpark(st.parked.take_expired(Instant::now())).collect();
    batch.extend(msgs);
    let mut reack = Vec::new();
    while !batch.is_empty() {
        let started = deliver_once(shared, st, batch, incoming, &mut reack).await;
        batch = started
            .iter()
            .flat_map(|peer| unpark(st.parked.take_peer(peer)))
            .collect();
    }
    reack
}

/// One pass of [`deliver`]; returns the senders whose handshakes opened.
async fn deliver_once(
    shared: &Arc<Shared>,
    st: &mut Inbox,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
    reack: &mut Vec<MessageId>,
) -> Vec<String> {
    let mut started = Vec::new();
    let mut slots = Vec::with_capacity(msgs.len());
    let mut work: Vec<(Envelope, Arc<PublicBundle>)> = Vec::new();
    for p in msgs {
        if st.seen.contains(&p.id) {
            // Shown before; if the application acknowledged it, that ack was lost: send again.
            if st.acked.contains(&p.id) {
                reack.push(p.id);
            }
            let _ = incoming.send(Incoming::Redelivered { id: p.id }).await;
            continue;
        }
        // Test traffic is reported as what it is where the relay admits it; anywhere else the
        // same payload was damaged or forged on the way, and is rejected.
        let (opaque_ok, anonymous_ok) = (
            shared.relay.allow_opaque_payloads,
            shared.relay.allow_anonymous_send,
        );
        if let nano_proto::PayloadKind::Session { mode } = p.message.kind() {
            match session_slot(shared, p, mode).await {
                Some(slot) => slots.push(slot),
                None => tracing::debug!("message left for the next connection"),
            }
            continue;
        }
        // A notice is an envelope behind a type and a mode byte: opened like any envelope.
        let (bytes, is_notice) = match nano_proto::notice::unwrap(p.message.as_slice()) {
            Some(inner) => (inner, true),
            None => (p.message.as_slice(), false),
        };
        let Ok(env) = nano_crypto::Envelope::from_bytes(bytes) else {
            if opaque_ok {
                slots.push(Slot::Unverifiable(p, Unverifiable::NotAnEnvelope));
            } else {
                let sender = p.sender.clone().unwrap_or_else(|| "(anonymous)".into());
                let error = ClientError::Rejected {
                    sender,
                    reason: "not a sealed envelope".into(),
                };
                slots.push(Slot::Refused(p, error));
            }
            continue;
        };
        let Some(name) = p.sender.clone() else {
            if anonymous_ok {
                slots.push(Slot::Unverifiable(p, Unverifiable::Anonymous));
            } else {
                let error = ClientError::Rejected {
                    sender: "(anonymous)".into(),
                    reason: "no sender to verify".into(),
                };
                slots.push(Slot::Refused(p, error));
            }
            continue;
        };
        // What the clear header alone refuses is refused before any signature check or
        // decryption is spent on it.
        if let Some(reason) = header_refusal(env.header(), &p, shared.relay.minimum_crypto_mode) {
            let error = ClientError::Rejected {
                sender: name,
                reason,
            };
            slots.push(Slot::Refused(p, error));
            continue;
        }
        let prepared = async {
            let rejected = |reason: String| ClientError::Rejected {
                sender: name.clone(),
                reason,
            };
            let bundle = match shared.bundle(&name).await {
                Ok(b) => b,
                Err(e @ ClientError::ContactKeyChanged { .. }) => return Err(e),
                Err(e) if transient(&e) => return Err(e),
                Err(e) => return Err(rejected(e.to_string())),
            };
            Ok::<_, ClientError>((env, bundle))
        }
        .await;
        match prepared {
            Ok((env, bundle)) => {
                work.push((env, bundle));
                slots.push(Slot::Open(p, work.len() - 1, is_notice));
            }
            Err(e) if transient(&e) => {
                tracing::debug!(error = %e, "message left for the next connection");
            }
            Err(e) => slots.push(Slot::Refused(p, e)),
        }
    }
    let headers: Vec<(nano_crypto::EnvelopeHeader, nano_crypto::Fingerprint)> = work
        .iter()
        .map(|(e, b)| (*e.header(), b.fingerprint()))
        .collect();
    let mut opened = if work.is_empty() {
        Vec::new()
    } else {
        let identity = Arc::clone(&shared.identity);
        // Signature checks and decryption are CPU work: off the async workers.
        tokio::task::spawn_blocking(move || {
            let items: Vec<(&Envelope, &PublicBundle)> =
                work.iter().map(|(e, b)| (e, &**b)).collect();
            open_many(&identity, &items)
        })
        .await
        .unwrap_or_default()
    }
    .into_iter()
    .map(Some)
    .collect::<Vec<_>>();
    for slot in slots {
        let item = match slot {
            Slot::Unverifiable(p, what) => {
                st.seen.insert(&p.id);
                Incoming::Unverifiable {
                    id: p.id,
                    len: p.message.len(),
                    sender: p.sender,
                    what,
                }
            }
            Slot::Session(p, name, bundle) => {
                let identity = Arc::clone(&shared.identity);
                let payload = p.message.clone();
                let sender = name.clone();
                let peer_bundle = Arc::clone(&bundle);
                // A message is light work; a handshake (KEM, signatures) is not.
                let light = payload.as_slice().first() == Some(&nano_crypto::session::TYPE_MESSAGE);
                let opened = shared
                    .sessions
                    .run(light, move |s| {
                        s.open(&identity, &sender, &bundle, payload.as_slice())
                            .map(|o| (o, bundle.fingerprint()))
                    })
                    .await;
                match opened {
                    Ok((o, fingerprint)) => {
                        st.seen.insert(&p.id);
                        if o.handshake {
                            started.push(name.clone());
                        }
                        Incoming::Message(Received {
                            id: p.id,
                            sender: name,
                            sender_fingerprint: fingerprint,
                            // A session message carries no time of its own: the relay's.
                            sent_at_ms: p.timestamp_ms,
                            timestamp_ms: p.timestamp_ms,
                            crypto_mode: o.mode,
                            plaintext: o.plaintext,
                            session: true,
                        })
                    }
                    // The store failed: nothing was shown, the message stays in the inbox.
                    Err(e @ ClientError::Io { .. }) => {
                        tracing::warn!(error = %e, "session state not saved; message left in the inbox");
                        continue;
                    }
                    Err(ClientError::SessionUnknown { mode, .. }) if may_park(&p) => {
                        // Perhaps ahead of its handshake: wait for it.
                        let since = p.parked_since.unwrap_or_else(Instant::now);
                        let peer = name.clone();
                        let Some((p, name, bundle)) =
                            st.parked.park(&peer, p.id, since, (p, name, peer_bundle))
                        else {
                            continue;
                        };
                        unreadable(shared, st, p, name, bundle, mode)
                    }
                    Err(ClientError::SessionUnknown { mode, .. }) => {
                        unreadable(shared, st, p, name, peer_bundle, mode)
                    }
                    Err(error) => {
                        st.seen.insert(&p.id);
                        Incoming::Rejected {
                            id: p.id,
                            sender: Some(name),
                            error,
                        }
                    }
                }
            }
            Slot::Refused(p, error) => {
                if !matches!(error, ClientError::ContactKeyChanged { .. }) {
                    st.seen.insert(&p.id);
                }
                Incoming::Rejected {
                    id: p.id,
                    sender: p.sender,
                    error,
                }
            }
            Slot::Open(p, i, true) => {
                let (header, _) = headers[i];
                let opened = opened.get_mut(i).and_then(Option::take);
                match notice_of(shared, &p, header, opened).await {
                    Ok(item) => {
                        st.seen.insert(&p.id);
                        item
                    }
                    // The store failed: the notice stays in the inbox.
                    Err(e @ ClientError::Io { .. }) => {
                        tracing::warn!(error = %e, "session state not saved; notice left in the inbox");
                        continue;
                    }
                    Err(error) => {
                        st.seen.insert(&p.id);
                        Incoming::Rejected {
                            id: p.id,
                            sender: p.sender,
                            error,
                        }
                    }
                }
            }
            Slot::Open(p, i, false) => {
                st.seen.insert(&p.id);
                let sender = p.sender.clone().unwrap_or_default();
                let rejected = |reason: String| Incoming::Rejected {
                    id: p.id,
                    sender: p.sender.clone(),
                    error: ClientError::Rejected {
                        sender: sender.clone(),
                        reason,
                    },
                };
                let (header, fingerprint) = headers[i];
                match opened.get_mut(i).and_then(Option::take) {
                    Some(Ok(plaintext)) => Incoming::Message(Received {
                        id: p.id,
                        sender: sender.clone(),
                        sender_fingerprint: fingerprint,
                        sent_at_ms: header.timestamp_ms,
                        timestamp_ms: p.timestamp_ms,
                        crypto_mode: header.mode,
                        plaintext,
                        session: false,
                    }),
                    Some(Err(e)) => rejected(e.to_string()),
                    None => rejected("not processed".into()),
                }
            }
        };
        if incoming.send(item).await.is_err() {
            return started;
        }
    }
    started
}

/// Whether a session message that no session held can open may wait for its handshake: a
/// message (a handshake waits for nothing) not parked for [`crate::parked::PARK_FOR`] yet.
fn may_park(p: &Pushed) -> bool {
    p.message.as_slice().first() == Some(&nano_crypto::session::TYPE_MESSAGE)
        && p.parked_since
            .is_none_or(|since| since.elapsed() < crate::parked::PARK_FOR)
}

/// A session payload from `name` that no session or prekey here opens: reported to the
/// application as [`ClientError::SessionUnknown`], and the sender told with a notice (one per
/// contact and mode per [`crate::notices::NOTICE_INTERVAL`]).
fn unreadable(
    shared: &Arc<Shared>,
    st: &mut Inbox,
    p: Pushed,
    name: String,
    bundle: Arc<PublicBundle>,
    mode: CryptoMode,
) -> Incoming {
    st.seen.insert(&p.id);
    if st.notified.allow(&name, mode, Instant::now()) {
        let notice = nano_proto::notice::Notice {
            mode,
            lost: p.id,
            lost_stored_at_ms: p.timestamp_ms,
        };
        crate::notices::send(shared, name.clone(), bundle, notice);
    }
    Incoming::Rejected {
        id: p.id,
        sender: Some(name.clone()),
        error: ClientError::SessionUnknown { sender: name, mode },
    }
}

/// What an opened notice envelope from `p.sender` means: its sessions in the notice's mode are
/// dropped and the application told which message was lost.
///
/// # Errors
/// [`ClientError::Rejected`] for an envelope that did not open, a body that is not a notice or
/// names another mode than its envelope's; the store's.
async fn notice_of(
    shared: &Arc<Shared>,
    p: &Pushed,
    header: nano_crypto::EnvelopeHeader,
    opened: Option<std::result::Result<Vec<u8>, nano_crypto::CryptoError>>,
) -> Result<Incoming> {
    let peer = p.sender.clone().unwrap_or_default();
    let rejected = |reason: String| ClientError::Rejected {
        sender: peer.clone(),
        reason,
    };
    let body = match opened {
        Some(Ok(body)) => body,
        Some(Err(e)) => return Err(rejected(e.to_string())),
        None => return Err(rejected("not processed".into())),
    };
    let notice =
        nano_proto::notice::Notice::from_bytes(&body).map_err(|e| rejected(e.to_string()))?;
    if notice.mode != header.mode {
        return Err(rejected("a notice about another mode than its own".into()));
    }
    crate::notices::received(shared, &peer, notice, header.timestamp_ms).await?;
    Ok(Incoming::SessionReset {
        id: p.id,
        peer,
        mode: notice.mode,
        lost: notice.lost,
    })
}

/// The slot of a session payload: refused without a sender or below the relay's floor, or
/// ready to open with the sender's trusted bundle; `None` when that bundle cannot be had now.
async fn session_slot(shared: &Shared, p: Pushed, mode: CryptoMode) -> Option<Slot> {
    let Some(name) = p.sender.clone() else {
        let error = ClientError::Rejected {
            sender: "(anonymous)".into(),
            reason: "a session message without a sender".into(),
        };
        return Some(Slot::Refused(p, error));
    };
    let floor = shared.relay.minimum_crypto_mode;
    if mode < floor {
        let error = ClientError::Rejected {
            sender: name,
            reason: format!("a {mode} session, below the relay's minimum {floor}"),
        };
        return Some(Slot::Refused(p, error));
    }
    match shared.bundle(&name).await {
        Ok(b) => Some(Slot::Session(p, name, b)),
        Err(e @ ClientError::ContactKeyChanged { .. }) => Some(Slot::Refused(p, e)),
        Err(e) if transient(&e) => None,
        Err(e) => {
            let error = ClientError::Rejected {
                sender: name,
                reason: e.to_string(),
            };
            Some(Slot::Refused(p, error))
        }
    }
}

/// Why an envelope pushed as `p` is refused on its clear header alone, if it is: its id is not
/// the one the relay delivered it under, its mode is below the relay's `floor`, or its time is
/// outside the replay window.
fn header_refusal(
    header: &nano_crypto::EnvelopeHeader,
    p: &Pushed,
    floor: nano_crypto::CryptoMode,
) -> Option<String> {
    if header.message_id != p.id.0 {
        return Some("the relay's message id differs from the sealed one".into());
    }
    if header.mode < floor {
        return Some(format!(
            "sealed in {}, below the relay's minimum {floor}",
            header.mode
        ));
    }
    freshness(
        header.timestamp_ms,
        i64::try_from(nano_proto::now_ms()).unwrap_or(i64::MAX),
    )
}

/// Why an envelope sealed at `sealed_ms` (its authenticated header time) is outside the replay
/// window at `now_ms`, if it is: older than [`nano_proto::REPLAY_WINDOW_MS`] (a replay the
/// relay no longer remembers) or later than [`nano_proto::CLOCK_SKEW_MS`] ahead.
fn freshness(sealed_ms: u64, now_ms: i64) -> Option<String> {
    let sealed = i64::try_from(sealed_ms).unwrap_or(i64::MAX);
    if sealed < now_ms.saturating_sub(nano_proto::REPLAY_WINDOW_MS) {
        Some("sealed more than 30 days ago: outside the replay window".into())
    } else if sealed > now_ms.saturating_add(nano_proto::CLOCK_SKEW_MS) {
        Some("dated more than 10 minutes in the future".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::freshness;

    #[test]
    fn the_replay_window_is_30_days_back_and_10_minutes_ahead() {
        let now = 1_800_000_000_000_i64;
        let at = |ms: i64| u64::try_from(ms).unwrap_or(0);
        assert_eq!(freshness(at(now), now), None);
        assert_eq!(freshness(at(now - nano_proto::REPLAY_WINDOW_MS), now), None);
        assert!(freshness(at(now - nano_proto::REPLAY_WINDOW_MS - 1), now).is_some());
        assert_eq!(freshness(at(now + nano_proto::CLOCK_SKEW_MS), now), None);
        assert!(freshness(at(now + nano_proto::CLOCK_SKEW_MS + 1), now).is_some());
        assert!(freshness(0, now).is_some());
        assert!(freshness(u64::MAX, now).is_some());
    }
}
