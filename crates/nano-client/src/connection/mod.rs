//! The connection task: one WebSocket per client, authenticated, kept alive, re-established with
//! exponential backoff and jitter. Sends not yet answered `sent` are written again after a
//! reconnect with the same id (the relay stores each id once). Received messages are decoded,
//! their senders' keys checked, verified (a backlog page with one batch verification) and
//! decrypted, and each id is handed to the application once (`receive`: what goes to the
//! inbox when, a new sender's messages after its identity bundle).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nano_crypto::{CryptoMode, OsRng};
use nano_proto::{ClientFrame, MessageId, RelayFrame};
use rand_core::RngCore;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{Incoming, Shared};
use crate::error::{ClientError, Result};
use crate::identities::Identities;
use crate::inbox::{Inbox, Pushed};
use crate::login::{LoginAttempt, channel_binding};
use crate::outbox::Outbox;
use receive::{admit, deliver, identity_settled, owe_up_to_date};

mod receive;

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
    /// `get_contact`, `upload_prekeys`). Answers come in order, so the oldest request (these,
    /// and the connection's own `get_identity`) takes the next one.
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
    /// Requests written and not yet answered, oldest first.
    requests: VecDeque<Asker>,
    /// What was received: shown, acknowledged, parked, notices sent.
    inbox: Inbox,
    /// Received messages waiting for their sender's identity bundle (`get_identity`).
    identities: Identities<Pushed>,
    /// The backlog is in, but messages of it still wait for an identity: `UpToDate` is owed
    /// once they are delivered.
    up_to_date_owed: bool,
}

/// Who takes the answer to a request.
#[derive(Debug)]
enum Asker {
    /// A caller of [`Command::Request`].
    Caller(oneshot::Sender<Result<RelayFrame>>),
    /// The connection itself: `get_identity` for the messages waiting on this sender.
    Identity(String),
}

impl State {
    /// Fails the unanswered requests: the connection they were written on is gone.
    fn drop_requests(&mut self) {
        for r in self.requests.drain(..) {
            if let Asker::Caller(r) = r {
                let _ = r.send(Err(not_connected()));
            }
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
                st.inbox.parked.clear();
                st.identities.clear();
                st.up_to_date_owed = false;
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
                st.inbox.acked.insert(id);
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
    let unreachable = |e: tokio_tungstenite::tungstenite::Error| ClientError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    ws.send(encode(&hello)?).await.map_err(unreachable)?;
    let challenge = next_frame(&mut ws).await?;
    let auth = attempt.answer(
        &shared.relay_bundle,
        challenge,
        &shared.identity,
        &shared.username,
    )?;
    let sent = Instant::now();
    ws.send(encode(&auth)?).await.map_err(unreachable)?;
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
        if ws.feed(m).await.is_err() {
            return End::Lost;
        }
    }
    if ws.flush().await.is_err() {
        return End::Lost;
    }
    let mut page: Vec<Pushed> = Vec::new();
    let mut in_page = true;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut ping_sent: Option<Instant> = None;
    loop {
        let next_retry = st.outbox.next_retry();
        let parked_until = st
            .inbox
            .parked
            .next_expiry()
            .map(tokio::time::Instant::from_std);
        let waited_until = st
            .identities
            .next_expiry()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = tokio::time::sleep_until(waited_until.unwrap_or_else(tokio::time::Instant::now)), if waited_until.is_some() => {
                // No answer in time: the inbox fetches those senders' bundles itself.
                let msgs = st.identities.expired(Instant::now());
                if deliver(shared, st, msgs, incoming, &mut ws).await.is_err() {
                    return End::Lost;
                }
            }
            _ = tokio::time::sleep_until(parked_until.unwrap_or_else(tokio::time::Instant::now)), if parked_until.is_some() => {
                // Parked messages whose wait is over are given up on.
                if deliver(shared, st, Vec::new(), incoming, &mut ws).await.is_err() {
                    return End::Lost;
                }
            }
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(tokio::time::Instant::now)), if next_retry.is_some() => {
                for f in st.outbox.due_retries() {
                    let Ok(m) = encode(&f) else { continue };
                    if ws.feed(m).await.is_err() {
                        return End::Lost;
                    }
                }
                if ws.flush().await.is_err() {
                    return End::Lost;
                }
            }
            c = cmds.recv() => {
                let Some(c) = c else { return End::Closed };
                match write_commands(st, c, cmds, &mut ws).await {
                    Written::Open => {}
                    Written::Closed => return End::Closed,
                    Written::Lost => return End::Lost,
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
                        match st.requests.pop_front() {
                            Some(Asker::Caller(r)) => {
                                let _ = r.send(Err(ClientError::Relay { code, message }));
                            }
                            // Refused (unknown, or a relay without `get_identity`).
                            Some(Asker::Identity(name)) => {
                                let settled =
                                    identity_settled(shared, st, &name, None, incoming, &mut ws);
                                if settled.await.is_err() {
                                    return End::Lost;
                                }
                            }
                            None => {}
                        }
                    }
                    RelayFrame::Error { code, message, .. } => {
                        tracing::warn!(%code, %message, "the relay reported an error");
                    }
                    f @ (RelayFrame::PrekeyBundle { .. }
                    | RelayFrame::Contact { .. }
                    | RelayFrame::IdentityBundle { .. }
                    | RelayFrame::PrekeysUploaded { .. }) => {
                        match st.requests.pop_front() {
                            Some(Asker::Caller(r)) => {
                                let _ = r.send(Ok(f));
                            }
                            Some(Asker::Identity(name)) => {
                                let settled =
                                    identity_settled(shared, st, &name, Some(f), incoming, &mut ws);
                                if settled.await.is_err() {
                                    return End::Lost;
                                }
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
                                if admit(shared, st, batch, incoming, &mut ws).await.is_err() {
                                    return End::Lost;
                                }
                            }
                        } else if admit(shared, st, vec![p], incoming, &mut ws).await.is_err() {
                            return End::Lost;
                        }
                    }
                    RelayFrame::Fetched { more, last_seq, .. } => {
                        let batch = std::mem::take(&mut page);
                        if admit(shared, st, batch, incoming, &mut ws).await.is_err() {
                            return End::Lost;
                        }
                        in_page = more;
                        if more {
                            let f = ClientFrame::Fetch { after: last_seq, limit: None };
                            let Ok(m) = encode(&f) else { continue };
                            if ws.send(m).await.is_err() {
                                return End::Lost;
                            }
                        } else {
                            st.up_to_date_owed = true;
                            owe_up_to_date(st, incoming).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Commands written in one flush at most: those already queued behind the first go out in one
/// socket write rather than one write each.
const MAX_COMMANDS_PER_WRITE: usize = 64;

/// How writing a run of commands ended.
enum Written {
    Open,
    Closed,
    Lost,
}

/// Writes `first` and the commands already queued behind it (up to [`MAX_COMMANDS_PER_WRITE`]),
/// then flushes once. `ack`/`read` frames of a run that fails are queued to be written again
/// after the reconnect; sends stay in the outbox, requests are failed by the caller.
async fn write_commands(
    st: &mut State,
    first: Command,
    cmds: &mut mpsc::Receiver<Command>,
    ws: &mut Ws,
) -> Written {
    let mut marks: Vec<ClientFrame> = Vec::new();
    let mut next = Some(first);
    let mut taken = 0;
    let mut ok = true;
    while let Some(c) = next.take() {
        taken += 1;
        let frame = match c {
            Command::Close => {
                let _ = ws.close(None).await;
                st.outbox.fail_all(|| ClientError::Closed);
                return Written::Closed;
            }
            Command::Flush(tx) => {
                ok = ok && ws.flush().await.is_ok();
                let _ = tx.send(());
                None
            }
            Command::Send { id, frame, reply } => {
                st.outbox.push(id, frame.clone(), reply);
                Some(frame)
            }
            Command::Ack(ids) => {
                for id in &ids {
                    st.inbox.acked.insert(id);
                }
                Some(ClientFrame::Ack { ids })
            }
            Command::Read(ids) => Some(ClientFrame::Read { ids }),
            Command::Request { frame, reply } => {
                st.requests.push_back(Asker::Caller(reply));
                Some(frame)
            }
        };
        if let Some(frame) = frame {
            if ok && let Ok(m) = encode(&frame) {
                ok = ws.feed(m).await.is_ok();
            }
            if matches!(frame, ClientFrame::Ack { .. } | ClientFrame::Read { .. }) {
                marks.push(frame);
            }
        }
        if ok && taken < MAX_COMMANDS_PER_WRITE {
            next = cmds.try_recv().ok();
        }
    }
    if ok && ws.flush().await.is_ok() {
        return Written::Open;
    }
    for f in marks {
        st.queue_mark(f);
    }
    Written::Lost
}

/// Codes a relay answers when it cannot take a send now but may soon (a database restarting,
/// a rate limit): the send is written again until the caller stops waiting.
fn retryable(code: nano_proto::ErrorCode) -> bool {
    use nano_proto::ErrorCode;
    matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited)
}
