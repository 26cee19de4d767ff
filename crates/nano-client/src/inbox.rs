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

use crate::client::{Incoming, Shared, Unverifiable};
use crate::contacts::BoundedSet;
use crate::error::{ClientError, Result};
use crate::parked::Parked;
use crate::triage::{
    Policy, SessionOutcome, Triage, bundle_failure, opened_envelope, opened_session, triage,
};

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
    let policy = Policy::from(&shared.relay);
    let now_ms = i64::try_from(nano_proto::now_ms()).unwrap_or(i64::MAX);
    for p in msgs {
        match triage(st, policy, p, now_ms) {
            Triage::Redelivered { id, reack: again } => {
                if again {
                    reack.push(id);
                }
                let _ = incoming.send(Incoming::Redelivered { id }).await;
            }
            Triage::Refused(p, error) => slots.push(Slot::Refused(p, error)),
            Triage::Unverifiable(p, what) => slots.push(Slot::Unverifiable(p, what)),
            Triage::Session(p, sender) => match trusted_bundle(shared, &sender).await {
                Ok(bundle) => slots.push(Slot::Session(p, sender, bundle)),
                Err(Some(error)) => slots.push(Slot::Refused(p, error)),
                Err(None) => tracing::debug!("message left for the next connection"),
            },
            Triage::Envelope {
                pushed,
                envelope,
                sender,
                notice,
            } => match trusted_bundle(shared, &sender).await {
                Ok(bundle) => {
                    work.push((envelope, bundle));
                    slots.push(Slot::Open(pushed, work.len() - 1, notice));
                }
                Err(Some(error)) => slots.push(Slot::Refused(pushed, error)),
                Err(None) => tracing::debug!("message left for the next connection"),
            },
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
                match opened_session(p, name.clone(), opened, Instant::now()) {
                    SessionOutcome::Shown {
                        received,
                        handshake,
                    } => {
                        st.seen.insert(&received.id);
                        if handshake {
                            started.push(name);
                        }
                        Incoming::Message(received)
                    }
                    SessionOutcome::Left(e) => {
                        tracing::warn!(error = %e, "session state not saved; message left in the inbox");
                        continue;
                    }
                    SessionOutcome::Park(p, mode) => {
                        // Perhaps ahead of its handshake: wait for it; the oldest parked
                        // message of a full set gives up its place and is reported lost.
                        let since = p.parked_since.unwrap_or_else(Instant::now);
                        let Some((p, name, bundle)) =
                            st.parked
                                .park(&name.clone(), p.id, since, (p, name, peer_bundle))
                        else {
                            continue;
                        };
                        unreadable(shared, st, p, name, bundle, mode)
                    }
                    SessionOutcome::Unreadable(p, mode) => {
                        unreadable(shared, st, p, name, peer_bundle, mode)
                    }
                    SessionOutcome::Refused(incoming) => {
                        if let Incoming::Rejected { id, .. } = &incoming {
                            st.seen.insert(id);
                        }
                        incoming
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
                let (header, fingerprint) = headers[i];
                opened_envelope(
                    p,
                    header,
                    fingerprint,
                    opened.get_mut(i).and_then(Option::take),
                )
            }
        };
        if incoming.send(item).await.is_err() {
            return started;
        }
    }
    started
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

/// `sender`'s trusted bundle; `Err(Some(_))` refuses the message, `Err(None)` leaves it in the
/// inbox for the next connection ([`bundle_failure`]).
async fn trusted_bundle(
    shared: &Shared,
    sender: &str,
) -> std::result::Result<Arc<PublicBundle>, Option<ClientError>> {
    shared
        .bundle(sender)
        .await
        .map_err(|e| bundle_failure(sender, e))
}
