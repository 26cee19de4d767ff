//! The connection task: one WebSocket per client, authenticated, kept alive, re-established with
//! exponential backoff and jitter. Sends not yet answered `sent` are written again after a
//! reconnect with the same id (the relay stores each id once). Received messages are decoded,
//! their senders' keys checked, verified (a backlog page with one batch verification) and
//! decrypted, and each id is handed to the application once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nano_crypto::{CryptoMode, Envelope, OsRng, PublicBundle, open_many};
use nano_proto::{ClientFrame, MessageId, RelayFrame};
use rand_core::RngCore;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{Incoming, Received, Shared, Unverifiable};
use crate::contacts::BoundedSet;
use crate::error::{ClientError, Result};
use crate::login::{LoginAttempt, channel_binding};
use crate::outbox::Outbox;
use crate::parked::Parked;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the client asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        id: MessageId,
        frame: ClientFrame,
        reply: oneshot::Sender<Result<bool>>,
    },
    Ack(Vec<MessageId>),
    Read(Vec<MessageId>),
    /// A frame the relay answers with one frame or an `error` without id (`get_prekeys`,
    /// `upload_prekeys`). Answers come in order, so the oldest request takes the next one.
    Request {
        frame: ClientFrame,
        reply: oneshot::Sender<Result<RelayFrame>>,
    },
    Flush(oneshot::Sender<()>),
    Close,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Marks queued while disconnected.
const MAX_QUEUED_MARKS: usize = 1024;
#[derive(Default)]
struct State {
    /// Sends not yet answered.
    outbox: Outbox,
    /// `ack`/`read` frames not yet written.
    marks: VecDeque<ClientFrame>,
    seen: BoundedSet<MessageId>,
    acked: BoundedSet<MessageId>,
    /// Requests written and not yet answered, oldest first.
    requests: VecDeque<oneshot::Sender<Result<RelayFrame>>>,
    /// Session notices sent lately (§14.14), so a backlog on a lost session costs one.
    notified: crate::notices::Notified,
    /// Session messages waiting for their session's handshake.
    parked: Parked<Waiting>,
}

impl State {
    /// Fails the unanswered requests: the connection they were written on is gone.
    fn drop_requests(&mut self) {
        for r in self.requests.drain(..) {
            let _ = r.send(Err(not_connected()));
        }
    }

    fn queue_mark(&mut self, f: ClientFrame) {
        if self.marks.len() >= MAX_QUEUED_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(f);
    }
}

/// How a connected phase ended.
enum End {
    Closed,
    Lost,
}

/// Frames go out in the binary form (payloads as raw bytes); the relay answers in kind.
fn encode(f: &ClientFrame) -> Result<Message> {
    Ok(Message::binary(f.to_binary()?))
}

/// Why a request cannot be answered now: retryable, a reconnect is under way.
fn not_connected() -> ClientError {
    ClientError::Unreachable {
        url: "the relay".into(),
        reason: "not connected; reconnecting".into(),
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut cmds: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
) {
    let mut st = State::default();
    let mut backoff = MIN_BACKOFF;
    loop {
        match start(&shared).await {
            Ok((ws, counts)) => {
                backoff = MIN_BACKOFF;
                crate::prekeys::replenish_in_background(&shared, counts);
                let end = serve(&shared, ws, &mut st, &mut cmds, &incoming).await;
                st.drop_requests();
                // Unacknowledged, so the relay delivers them again on the next connection.
                st.parked.clear();
                match end {
                    End::Closed => return,
                    End::Lost => tracing::debug!("connection lost; reconnecting"),
                }
            }
            Err(e) if e.is_retryable() => {
                // The relay (or its database) is restarting: try again after the backoff.
                tracing::debug!(error = %e, "login refused for now; retrying");
            }
            Err(e) if e.is_permanent_refusal() => {
                // Refused for a reason that will not go away by itself (the relay refused our
                // key, its certificate or identity is wrong, it could not prove itself):
                // retrying cannot help, and every waiting and later send says why.
                tracing::warn!(error = %e, "giving up on the relay");
                st.outbox.fail_all(|| e.clone());
                shared.give_up(e);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "cannot connect; retrying"),
        }
        // Backoff with jitter, still taking commands so sends queue up meanwhile.
        let jitter = OsRng.next_u64() % (backoff.as_millis() as u64 / 2 + 1);
        let wake = tokio::time::Instant::now() + backoff + Duration::from_millis(jitter);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => break,
                c = cmds.recv() => match c {
                    None | Some(Command::Close) => return,
                    Some(c) => queue(&mut st, c),
                },
            }
        }
    }
}

/// Records a command while disconnected.
fn queue(st: &mut State, c: Command) {
    match c {
        Command::Send { id, frame, reply } => {
            st.outbox.forget_abandoned();
            st.outbox.push(id, frame, reply);
        }
        Command::Ack(ids) => {
            for id in &ids {
                st.acked.insert(id);
            }
            st.queue_mark(ClientFrame::Ack { ids });
        }
        Command::Read(ids) => st.queue_mark(ClientFrame::Read { ids }),
        Command::Request { reply, .. } => {
            let _ = reply.send(Err(not_connected()));
        }
        Command::Flush(tx) => {
            let _ = tx.send(());
        }
        Command::Close => {}
    }
}

/// Connects and authenticates; the one-time prekey counts `auth_ok` reported.
async fn start(shared: &Shared) -> Result<(Ws, Option<nano_proto::PrekeyCounts>)> {
    let url = shared.relay.websocket_url.clone();
    let connector = tokio_tungstenite::Connector::Rustls(Arc::clone(&shared.tls));
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(crate::client::websocket_config()),
        true,
        Some(connector),
    );
    let (mut ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| ClientError::Timeout("connecting to the relay"))?
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Tls(t) => ClientError::Tls {
                url: url.clone(),
                reason: t.to_string(),
            },
            e => ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            },
        })?;
    let me = shared.identity.public_bundle();
    let mode: CryptoMode = me
        .modes()
        .filter(|m| *m >= shared.relay.minimum_crypto_mode)
        .min()
        .ok_or_else(|| ClientError::NoCommonMode("the relay".into()))?;
    let binding = channel_binding(&ws)?;
    let (attempt, hello) = LoginAttempt::start(mode, binding);
    ws.send(encode(&hello)?)
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let challenge = next_frame(&mut ws).await?;
    let auth = attempt.answer(
        &shared.relay_bundle,
        challenge,
        &shared.identity,
        &shared.username,
    )?;
    let sent = Instant::now();
    ws.send(encode(&auth)?)
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    match next_frame(&mut ws).await? {
        RelayFrame::AuthOk {
            one_time_prekeys, ..
        } => {
            let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            shared.rtt_us.store(rtt, Ordering::Relaxed);
            Ok((ws, one_time_prekeys))
        }
        RelayFrame::Error { code, message, .. } => Err(ClientError::Relay { code, message }),
        f => Err(ClientError::Protocol(format!(
            "expected auth_ok, got {}",
            f.type_name()
        ))),
    }
}

async fn next_frame(ws: &mut Ws) -> Result<RelayFrame> {
    loop {
        let m = tokio::time::timeout(HANDSHAKE_TIMEOUT, ws.next())
            .await
            .map_err(|_| ClientError::Timeout("waiting for the relay"))?;
        match m {
            Some(Ok(Message::Text(t))) => return Ok(RelayFrame::from_json(&t)?),
            Some(Ok(Message::Binary(b))) => return Ok(RelayFrame::from_binary(&b)?),
            Some(Ok(Message::Close(c))) => {
                return Err(ClientError::Protocol(format!(
                    "the relay closed the connection{}",
                    c.map(|c| format!(": {}", c.reason)).unwrap_or_default()
                )));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
            None => return Err(ClientError::Closed),
        }
    }
}

/// A `message` frame's fields.
struct Pushed {
    id: MessageId,
    sender: Option<String>,
    timestamp_ms: u64,
    message: nano_proto::Payload,
    /// When it was first parked (a session message tried again), if it was.
    parked_since: Option<Instant>,
}

async fn serve(
    shared: &Arc<Shared>,
    mut ws: Ws,
    st: &mut State,
    cmds: &mut mpsc::Receiver<Command>,
    incoming: &mpsc::Sender<Incoming>,
) -> End {
    // Everything not yet answered goes out again, in order, with the same ids.
    let mut resend: Vec<Message> = Vec::new();
    for f in st.outbox.resend_all() {
        if let Ok(m) = encode(&f) {
            resend.push(m);
        }
    }
    while let Some(f) = st.marks.pop_front() {
        if let Ok(m) = encode(&f) {
            resend.push(m);
        }
    }
    for m in resend {
        if ws.send(m).await.is_err() {
            return End::Lost;
        }
    }
    let mut page: Vec<Pushed> = Vec::new();
    let mut in_page = true;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut ping_sent: Option<Instant> = None;
    loop {
        let next_retry = st.outbox.next_retry();
        let parked_until = st.parked.next_expiry().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = tokio::time::sleep_until(parked_until.unwrap_or_else(tokio::time::Instant::now)), if parked_until.is_some() => {
                // Parked messages whose wait is over are given up on.
                deliver(shared, st, Vec::new(), incoming, &mut ws).await;
            }
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(tokio::time::Instant::now)), if next_retry.is_some() => {
                for f in st.outbox.due_retries() {
                    let Ok(m) = encode(&f) else { continue };
                    if ws.send(m).await.is_err() {
                        return End::Lost;
                    }
                }
            }
            c = cmds.recv() => {
                let Some(c) = c else { return End::Closed };
                let frame = match c {
                    Command::Close => {
                        let _ = ws.close(None).await;
                        st.outbox.fail_all(|| ClientError::Closed);
                        return End::Closed;
                    }
                    Command::Flush(tx) => {
                        let _ = ws.flush().await;
                        let _ = tx.send(());
                        continue;
                    }
                    Command::Send { id, frame, reply } => {
                        st.outbox.push(id, frame.clone(), reply);
                        frame
                    }
                    Command::Ack(ids) => {
                        for id in &ids {
                            st.acked.insert(id);
                        }
                        ClientFrame::Ack { ids }
                    }
                    Command::Read(ids) => ClientFrame::Read { ids },
                    Command::Request { frame, reply } => {
                        st.requests.push_back(reply);
                        frame
                    }
                };
                let Ok(m) = encode(&frame) else { continue };
                if ws.send(m).await.is_err() {
                    if matches!(frame, ClientFrame::Ack { .. } | ClientFrame::Read { .. }) {
                        st.queue_mark(frame);
                    }
                    return End::Lost;
                }
            }
            _ = keepalive.tick() => {
                ping_sent = Some(Instant::now());
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return End::Lost;
                }
            }
            m = ws.next() => {
                let frame = match m {
                    Some(Ok(Message::Text(t))) => RelayFrame::from_json(&t),
                    Some(Ok(Message::Binary(b))) => RelayFrame::from_binary(&b),
                    Some(Ok(Message::Pong(_))) => {
                        if let Some(t) = ping_sent.take() {
                            let rtt = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                            shared.rtt_us.store(rtt, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Lost,
                    Some(Ok(_)) => continue,
                };
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable frame from the relay");
                        continue;
                    }
                };
                match frame {
                    RelayFrame::Sent { id, duplicate } => st.outbox.answer(&id, Ok(duplicate)),
                    RelayFrame::Error { code, message, id: Some(id) } if st.outbox.awaits(&id) => {
                        if retryable(code) {
                            tracing::debug!(%code, "send refused for now; retrying");
                            st.outbox.retry_later(id);
                        } else {
                            st.outbox.answer(&id, Err(ClientError::Relay { code, message }));
                        }
                    }
                    RelayFrame::Error { code, message, id: None } if !st.requests.is_empty() => {
                        if let Some(r) = st.requests.pop_front() {
                            let _ = r.send(Err(ClientError::Relay { code, message }));
                        }
                    }
                    RelayFrame::Error { code, message, .. } => {
                        tracing::warn!(%code, %message, "the relay reported an error");
                    }
                    f @ (RelayFrame::PrekeyBundle { .. } | RelayFrame::PrekeysUploaded { .. }) => {
                        match st.requests.pop_front() {
                            Some(r) => {
                                let _ = r.send(Ok(f));
                            }
                            None => tracing::warn!("an answer to no request; ignored"),
                        }
                    }
                    RelayFrame::Message { id, sender, timestamp_ms, message, .. } => {
                        let p = Pushed {
                            id,
                            sender: sender.map(|s| s.as_str().to_owned()),
                            timestamp_ms,
                            message,
                            parked_since: None,
                        };
                        if in_page {
                            page.push(p);
                            // A page is at most MAX_FETCH_LIMIT long; a relay that sends more
                            // has them opened in pieces rather than held without bound.
                            if page.len() >= nano_proto::frames::MAX_FETCH_LIMIT as usize {
                                let batch = std::mem::take(&mut page);
                                deliver(shared, st, batch, incoming, &mut ws).await;
                            }
                        } else {
                            deliver(shared, st, vec![p], incoming, &mut ws).await;
                        }
                    }
                    RelayFrame::Fetched { more, last_seq, .. } => {
                        let batch = std::mem::take(&mut page);
                        deliver(shared, st, batch, incoming, &mut ws).await;
                        in_page = more;
                        if !more {
                            let _ = incoming.send(Incoming::UpToDate).await;
                        }
                        if more {
                            let f = ClientFrame::Fetch { after: last_seq, limit: None };
                            let Ok(m) = encode(&f) else { continue };
                            if ws.send(m).await.is_err() {
                                return End::Lost;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
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

/// Codes a relay answers when it cannot take a send now but may soon (a database restarting,
/// a rate limit): the send is written again until the caller stops waiting.
fn retryable(code: nano_proto::ErrorCode) -> bool {
    use nano_proto::ErrorCode;
    matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited)
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
async fn deliver(
    shared: &Arc<Shared>,
    st: &mut State,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
    ws: &mut Ws,
) {
    let unpark = |v: Vec<(Waiting, Instant)>| {
        v.into_iter().map(|((mut p, _, _), since)| {
            p.parked_since = Some(since);
            p
        })
    };
    let mut batch: Vec<Pushed> = unpark(st.parked.take_expired(Instant::now())).collect();
    batch.extend(msgs);
    while !batch.is_empty() {
        let started = deliver_once(shared, st, batch, incoming, ws).await;
        batch = started
            .iter()
            .flat_map(|peer| unpark(st.parked.take_peer(peer)))
            .collect();
    }
}

/// One pass of [`deliver`]; returns the senders whose handshakes opened.
async fn deliver_once(
    shared: &Arc<Shared>,
    st: &mut State,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
    ws: &mut Ws,
) -> Vec<String> {
    let mut started = Vec::new();
    let mut reack = Vec::new();
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
    if !reack.is_empty()
        && let Ok(m) = encode(&ClientFrame::Ack { ids: reack })
    {
        let _ = ws.send(m).await;
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
    st: &mut State,
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
