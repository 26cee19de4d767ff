//! One connection's protocol state: login, sends, inbox paging, key exchange.
//!
//! The session turns a decoded [`ClientFrame`] into the frames to answer with. It does no socket
//! I/O (that is `ws.rs`); it awaits storage, the crypto pool and the writer. A `send_message` is
//! answered later, when its batch commits, through the [`Pending`] future it returns, so one
//! connection can have many sends in flight.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use nano_crypto::CryptoMode;
use nano_proto::frames::MAX_FETCH_LIMIT;
use nano_proto::{Bytes, ClientFrame, MessageId, RelayFrame, Username};
use tokio::sync::oneshot;

use crate::directory::UserEntry;
use crate::error::RelayError;
use crate::hub::{Mailbox, SessionEvent};
use crate::kex::Offer;
use crate::login::{self, Challenged, MAX_LOGIN_ATTEMPTS, Transport};
use crate::payload;
use crate::state::{Shared, now_ms};
use crate::storage::{Mark, MarkKind, NewMessage, StoreOutcome, StoredMessage};
use crate::writer::WriteRequest;

/// Inbox page size when streaming after `auth` and on a wake-up.
pub const PAGE: u32 = 100;
/// Key-exchange offers one session keeps for completion (one per mode).
const MAX_OFFERS: usize = 3;

/// An answer that arrives when a send commits.
pub type Pending = Pin<Box<dyn Future<Output = RelayFrame> + Send>>;

/// What handling a frame produced.
#[derive(Default)]
pub struct Output {
    /// Frames to send now, in order.
    pub frames: Vec<RelayFrame>,
    /// An answer to send when it is ready.
    pub pending: Option<Pending>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("frames", &self.frames.len())
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl From<Vec<RelayFrame>> for Output {
    fn from(frames: Vec<RelayFrame>) -> Self {
        Self {
            frames,
            pending: None,
        }
    }
}

/// The `error` frame for `e`, counted in the metrics.
pub fn error_frame(shared: &Shared, e: &RelayError, id: Option<MessageId>) -> RelayFrame {
    let code = e.code();
    e.report();
    shared.metrics.error(code);
    let mut message = e.public_message();
    while message.len() > nano_proto::frames::MAX_ERROR_MESSAGE_BYTES {
        message.pop();
    }
    RelayFrame::Error { code, message, id }
}

fn message_frame(m: &StoredMessage) -> Result<RelayFrame, RelayError> {
    let sender = m
        .sender
        .as_deref()
        .map(Username::new)
        .transpose()
        .map_err(|_| RelayError::Corrupt(format!("the sender name of message seq {}", m.seq)))?;
    Ok(RelayFrame::Message {
        id: MessageId(m.message_id),
        seq: u64::try_from(m.seq).unwrap_or(0),
        sender,
        crypto_mode: m.crypto_mode,
        timestamp_ms: u64::try_from(m.timestamp_ms).unwrap_or(0),
        message: m.payload.clone(),
    })
}

/// Per-connection protocol state.
pub struct Session {
    shared: Arc<Shared>,
    conn_id: u64,
    transport: Transport,
    /// The `challenge` awaiting its `auth`.
    challenged: Option<Challenged>,
    /// `hello` frames so far.
    logins: u32,
    user: Option<Arc<UserEntry>>,
    /// Highest inbox sequence delivered on this connection.
    cursor: i64,
    /// True once the backlog is drained: pushes go straight out.
    live: bool,
    offers: HashMap<u64, Offer>,
    mailbox: Mailbox,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn_id", &self.conn_id)
            .field("authenticated", &self.user.is_some())
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session over `transport`; its mailbox is handed to the hub once it
    /// authenticates.
    pub fn new(shared: Arc<Shared>, transport: Transport, mailbox: Mailbox) -> Self {
        Self {
            conn_id: shared.conn_id(),
            shared,
            transport,
            challenged: None,
            logins: 0,
            user: None,
            cursor: 0,
            live: false,
            offers: HashMap::new(),
            mailbox,
        }
    }

    fn err(&self, e: &RelayError, id: Option<MessageId>) -> RelayFrame {
        error_frame(&self.shared, e, id)
    }

    fn require_user(&self) -> Result<&Arc<UserEntry>, RelayError> {
        self.user.as_ref().ok_or(RelayError::Unauthorized)
    }

    fn check_mode(&self, mode: CryptoMode) -> Result<(), RelayError> {
        login::check_floor(&self.shared, mode)
    }

    /// Handles one frame.
    pub async fn handle(&mut self, frame: ClientFrame) -> Output {
        match frame {
            ClientFrame::Hello { crypto_mode, nonce } => self.hello(crypto_mode, &nonce).await,
            ClientFrame::Auth {
                username,
                crypto_mode,
                signature,
            } => self.auth(username, crypto_mode, signature).await,
            ClientFrame::SendMessage {
                recipient,
                message,
                crypto_mode,
                id,
            } => self.send(recipient, message, crypto_mode, id).await,
            ClientFrame::Ack { ids } => self.mark(ids, MarkKind::Ack).await.into(),
            ClientFrame::Read { ids } => self.mark(ids, MarkKind::Read).await.into(),
            ClientFrame::Fetch { after, limit } => {
                let after = after.map_or(self.cursor, |a| i64::try_from(a).unwrap_or(i64::MAX));
                match self
                    .page(after, limit.unwrap_or(PAGE).min(MAX_FETCH_LIMIT), true)
                    .await
                {
                    Ok(f) => f.into(),
                    Err(e) => vec![self.err(&e, None)].into(),
                }
            }
            ClientFrame::KeyExchange {
                crypto_mode,
                key_id,
                ciphertext,
            } => self
                .key_exchange(crypto_mode, key_id, ciphertext)
                .await
                .into(),
        }
    }

    fn already_authenticated(&self) -> RelayFrame {
        let e = RelayError::Proto(nano_proto::ProtoError::InvalidField {
            field: "type",
            reason: "this connection is already authenticated".into(),
        });
        self.err(&e, None)
    }

    /// `hello` → the relay's signed `challenge` (a new one replaces any unanswered one).
    async fn hello(&mut self, mode: CryptoMode, client_nonce: &Bytes) -> Output {
        if self.user.is_some() {
            return vec![self.already_authenticated()].into();
        }
        self.challenged = None;
        if self.logins >= MAX_LOGIN_ATTEMPTS {
            return vec![self.err(&RelayError::TooManyLogins, None)].into();
        }
        self.logins += 1;
        match login::challenge(&self.shared, &self.transport, mode, client_nonce).await {
            Ok((challenged, frame)) => {
                self.challenged = Some(challenged);
                vec![frame].into()
            }
            Err(e) => vec![self.err(&e, None)].into(),
        }
    }

    async fn auth(&mut self, username: Username, mode: CryptoMode, signature: Bytes) -> Output {
        if self.user.is_some() {
            return vec![self.already_authenticated()].into();
        }
        // A challenge answers one attempt: replaying a signature over it can never succeed
        // again. After a failure the client starts over with `hello`.
        let Some(spent) = self.challenged.take() else {
            return vec![self.err(&RelayError::AuthFailed, None)].into();
        };
        let checked = login::verify(
            &self.shared,
            &self.transport,
            &spent,
            &username,
            mode,
            &signature,
        )
        .await;
        match checked {
            Ok(user) => self.authenticated(user).await,
            Err(e) => {
                tracing::debug!(conn = self.conn_id, code = %e.code(), "auth refused");
                vec![self.err(&e, None)].into()
            }
        }
    }

    async fn authenticated(&mut self, user: Arc<UserEntry>) -> Output {
        let uid = user.record.id;
        // Registered before the inbox is read: a message committed meanwhile is either in the
        // page or queued as an event, and events at or below the cursor are skipped.
        self.shared
            .hub
            .register(uid, self.conn_id, self.mailbox.clone());
        let username = match Username::new(&user.record.username) {
            Ok(u) => u,
            Err(e) => return vec![self.err(&e.into(), None)].into(),
        };
        self.user = Some(user);
        tracing::debug!(conn = self.conn_id, "authenticated");
        let pending = match self
            .shared
            .blocking(move |s| s.storage.pending_count(uid))
            .await
        {
            Ok(n) => n,
            Err(e) => return vec![self.err(&e, None)].into(),
        };
        let mut frames = vec![RelayFrame::AuthOk { username, pending }];
        match self.page(0, PAGE, true).await {
            Ok(f) => frames.extend(f),
            Err(e) => frames.push(self.err(&e, None)),
        }
        frames.into()
    }

    /// Up to `limit` inbox messages after `after`, then (with `end_frame`) a `fetched` frame.
    async fn page(
        &mut self,
        after: i64,
        limit: u32,
        end_frame: bool,
    ) -> Result<Vec<RelayFrame>, RelayError> {
        let uid = self.require_user()?.record.id;
        // One more than asked tells whether more are waiting.
        let rows = self
            .shared
            .blocking(move |s| s.storage.pending(uid, after, limit + 1))
            .await?;
        let more = rows.len() > limit as usize;
        let mut frames = Vec::with_capacity(rows.len() + 1);
        let mut last = None;
        for m in rows.iter().take(limit as usize) {
            frames.push(message_frame(m)?);
            last = Some(m.seq);
        }
        if let Some(l) = last {
            self.cursor = self.cursor.max(l);
        }
        self.live = !more;
        self.shared
            .metrics
            .messages_delivered
            .inc_by(frames.len() as u64);
        if end_frame || more {
            frames.push(RelayFrame::Fetched {
                count: u32::try_from(frames.len()).unwrap_or(u32::MAX),
                last_seq: last.and_then(|l| u64::try_from(l).ok()),
                more,
            });
        }
        Ok(frames)
    }

    /// Frames for an event from the hub.
    pub async fn on_event(&mut self, ev: SessionEvent) -> Vec<RelayFrame> {
        self.mailbox.taken(&ev);
        match ev {
            SessionEvent::Deliver(m) if self.live && m.seq > self.cursor => {
                self.cursor = m.seq;
                self.shared.metrics.messages_delivered.inc();
                match message_frame(&m) {
                    Ok(f) => vec![f],
                    Err(e) => vec![self.err(&e, None)],
                }
            }
            SessionEvent::Redeliver(m) => {
                // Possibly below the cursor; the client drops an id it has shown already.
                self.cursor = self.cursor.max(m.seq);
                self.shared.metrics.messages_delivered.inc();
                match message_frame(&m) {
                    Ok(f) => vec![f],
                    Err(e) => vec![self.err(&e, None)],
                }
            }
            SessionEvent::Wake if self.live => {
                let cursor = self.cursor;
                self.page(cursor, PAGE, false)
                    .await
                    .unwrap_or_else(|e| vec![self.err(&e, None)])
            }
            _ => Vec::new(),
        }
    }

    async fn send(
        &mut self,
        recipient: Username,
        message: String,
        mode: CryptoMode,
        id: Option<MessageId>,
    ) -> Output {
        match self.prepare_send(recipient, message, mode, id).await {
            Ok(pending) => Output {
                frames: Vec::new(),
                pending: Some(pending),
            },
            Err((e, id)) => vec![self.err(&e, id)].into(),
        }
    }

    /// Checks a send and hands it to the writer; on refusal, the error and the id to name.
    async fn prepare_send(
        &mut self,
        recipient: Username,
        message: String,
        label: CryptoMode,
        id: Option<MessageId>,
    ) -> Result<Pending, (RelayError, Option<MessageId>)> {
        let received = Instant::now();
        let sec = &self.shared.config.security;
        if self.user.is_none() && !sec.allow_anonymous_send {
            return Err((RelayError::Unauthorized, id));
        }
        let max = self.shared.config.limits.max_message_bytes;
        if message.len() > max {
            let e = nano_proto::ProtoError::MessageTooLarge {
                max,
                got: message.len(),
            };
            return Err((e.into(), id));
        }
        // The floor applies to what the message is (its envelope's mode byte), not its label.
        let judged =
            payload::judge(&message, label, id, sec.allow_opaque_payloads).map_err(|e| (e, id))?;
        let id = judged.id;
        self.store(recipient, message, judged.mode, id, received)
            .await
            .map_err(|e| (e, Some(id)))
    }

    async fn store(
        &mut self,
        recipient: Username,
        message: String,
        mode: CryptoMode,
        id: MessageId,
        received: Instant,
    ) -> Result<Pending, RelayError> {
        self.check_mode(mode)?;
        let entry = match self.shared.directory.cached(recipient.as_str()) {
            Some(e) => e,
            None => {
                let name = recipient.as_str().to_owned();
                self.shared
                    .blocking(move |s| s.directory.lookup(&name))
                    .await?
                    .ok_or(RelayError::UnknownRecipient)?
            }
        };
        if mode < entry.record.min_mode {
            return Err(RelayError::ModeNotAllowed {
                mode,
                floor: entry.record.min_mode,
            });
        }
        let writer = self.shared.writer().ok_or(RelayError::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        let sender = match &self.user {
            Some(u) => Some(Username::new(&u.record.username)?),
            None => None,
        };
        writer
            .submit(WriteRequest {
                msg: NewMessage {
                    message_id: id.0,
                    recipient_id: entry.record.id,
                    sender_id: self.user.as_ref().map(|u| u.record.id),
                    crypto_mode: mode,
                    timestamp_ms: now_ms(),
                    payload: message,
                },
                sender,
                received,
                reply: tx,
            })
            .await?;
        let shared = Arc::clone(&self.shared);
        Ok(Box::pin(async move {
            let outcome = rx.await.unwrap_or(Err(RelayError::Unavailable));
            match outcome {
                Ok(StoreOutcome::Stored(_)) => RelayFrame::Sent {
                    id,
                    duplicate: false,
                },
                Ok(StoreOutcome::Duplicate(_)) => RelayFrame::Sent {
                    id,
                    duplicate: true,
                },
                Ok(StoreOutcome::InboxFull) => {
                    error_frame(&shared, &RelayError::InboxFull, Some(id))
                }
                Err(e) => error_frame(&shared, &e, Some(id)),
            }
        }))
    }

    /// Applies an `ack` or `read` with the writer's next batch.
    async fn mark(&mut self, ids: Vec<MessageId>, kind: MarkKind) -> Vec<RelayFrame> {
        let uid = match self.require_user() {
            Ok(u) => u.record.id,
            Err(e) => return vec![self.err(&e, None)],
        };
        let mark = Mark {
            recipient_id: uid,
            kind,
            ids: ids.iter().map(|i| i.0).collect(),
        };
        let r = match self.shared.writer() {
            Some(w) => w.mark(mark).await,
            None => Err(RelayError::Unavailable),
        };
        match r {
            Ok(_) => Vec::new(),
            Err(e) => vec![self.err(&e, None)],
        }
    }

    async fn key_exchange(
        &mut self,
        mode: CryptoMode,
        key_id: Option<u64>,
        ciphertext: Option<Bytes>,
    ) -> Vec<RelayFrame> {
        match self.key_exchange_inner(mode, key_id, ciphertext).await {
            Ok(f) => vec![f],
            Err(e) => vec![self.err(&e, None)],
        }
    }

    async fn key_exchange_inner(
        &mut self,
        mode: CryptoMode,
        key_id: Option<u64>,
        ciphertext: Option<Bytes>,
    ) -> Result<RelayFrame, RelayError> {
        self.check_mode(mode)?;
        let shared = Arc::clone(&self.shared);
        match (key_id, ciphertext) {
            (Some(id), Some(ct)) => {
                let offer = self
                    .offers
                    .get(&id)
                    .filter(|o| o.keypair.mode() == mode)
                    .cloned()
                    .ok_or_else(|| {
                        RelayError::Proto(nano_proto::ProtoError::InvalidField {
                            field: "key_id",
                            reason: "no key with this id was offered on this connection".into(),
                        })
                    })?;
                if u64::try_from(now_ms()).unwrap_or(0) >= offer.expires_at_ms {
                    self.offers.remove(&id);
                    return Err(RelayError::KeyExpired);
                }
                // A ciphertext that fails leaves the offer in place; a completed one is spent.
                let frame = self
                    .shared
                    .crypto
                    .run(move || shared.kex.complete(&offer, ct.as_slice()))
                    .await??;
                self.offers.remove(&id);
                Ok(frame)
            }
            _ => {
                let offer = self
                    .shared
                    .crypto
                    .run(move || shared.kex.offer(mode))
                    .await??;
                if self.offers.len() >= MAX_OFFERS {
                    self.offers.retain(|_, o| o.keypair.mode() != mode);
                }
                if self.offers.len() >= MAX_OFFERS {
                    self.offers.clear();
                }
                let frame = offer.frame.clone();
                self.offers.insert(offer.key_id, offer);
                Ok(frame)
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(u) = &self.user {
            self.shared.hub.unregister(u.record.id, self.conn_id);
        }
    }
}
