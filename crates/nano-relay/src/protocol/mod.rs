//! The per-connection handler: [`Session`] turns a decoded [`ClientFrame`] into the frames to
//! answer with, one file per command: `login` (hello, auth), `send` (send_message), `inbox`
//! (fetch, ack, read, pushes), `key_exchange`, `prekeys` (upload_prekeys, get_prekeys,
//! get_contact), `identity` (get_identity);
//! `payload` judges a send by its envelope.
//!
//! It does no socket I/O (that is `net::connection`); it awaits storage, the crypto pool and
//! the writer. A `send_message` is
//! answered later, when its batch commits, through the [`Pending`] future it returns, so one
//! connection can have many sends in flight.

mod identity;
mod inbox;
pub(crate) mod key_exchange;
pub(crate) mod login;
pub(crate) mod payload;
mod prekeys;
pub(crate) mod replies;
mod send;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nano_crypto::CryptoMode;
use nano_proto::frames::MAX_FETCH_LIMIT;
use nano_proto::{ClientFrame, MessageId, RelayFrame, Username};

use crate::crypto::kex::Offer;
use crate::delivery::hub::Mailbox;
use crate::error::RelayError;
use crate::state::Shared;
use crate::storage::MarkKind;
use login::{Challenged, Transport};

/// Inbox page size when streaming after `auth` and on a wake-up.
pub(crate) const PAGE: u32 = 100;

/// An answer that arrives when a send commits.
pub(crate) type Pending = Pin<Box<dyn Future<Output = RelayFrame> + Send>>;

/// What handling a frame produced.
#[derive(Default)]
pub(crate) struct Output {
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
pub(crate) fn error_frame(shared: &Shared, e: &RelayError, id: Option<MessageId>) -> RelayFrame {
    let code = e.code();
    e.report();
    shared.metrics.error(code);
    RelayFrame::error_with(code, e.public_message(), id)
}

/// The authenticated user of a session.
#[derive(Debug)]
struct LoggedIn {
    id: i64,
    name: Username,
}

/// Per-connection protocol state.
pub(crate) struct Session {
    shared: Arc<Shared>,
    conn_id: u64,
    transport: Transport,
    /// The `challenge` awaiting its `auth`.
    challenged: Option<Challenged>,
    /// `hello` frames so far.
    logins: u32,
    /// Who authenticated: the id and canonical name only (the bundle stays in the directory's
    /// caches, not pinned by every connection).
    user: Option<LoggedIn>,
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
    pub(crate) fn new(shared: Arc<Shared>, transport: Transport, mailbox: Mailbox) -> Self {
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

    fn require_user(&self) -> Result<&LoggedIn, RelayError> {
        self.user.as_ref().ok_or(RelayError::Unauthorized)
    }

    fn check_mode(&self, mode: CryptoMode) -> Result<(), RelayError> {
        self.shared.check_floor(mode)
    }

    /// Handles what the connection decoded: a frame, or why it is not one (answered with
    /// its error code).
    pub(crate) async fn handle_decoded(
        &mut self,
        decoded: Result<ClientFrame, nano_proto::ProtoError>,
    ) -> Output {
        match decoded {
            Ok(f) => self.handle(f).await,
            Err(e) => vec![self.err(&RelayError::Proto(e), None)].into(),
        }
    }

    /// The answer to a frame refused by the rate limits: `rate_limited`, naming a send's id so
    /// the client can write it again later.
    pub(crate) fn rate_limited(&self, frame: Option<&ClientFrame>) -> RelayFrame {
        let id = match frame {
            Some(ClientFrame::SendMessage { id, .. }) => *id,
            _ => None,
        };
        self.err(&RelayError::RateLimited, id)
    }

    /// Handles one frame.
    pub(crate) async fn handle(&mut self, frame: ClientFrame) -> Output {
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
            ClientFrame::UploadPrekeys {
                crypto_mode,
                signed_prekeys,
                one_time_prekeys,
                replace_one_time,
            } => self
                .upload_prekeys(
                    crypto_mode,
                    signed_prekeys,
                    one_time_prekeys,
                    replace_one_time,
                )
                .await
                .into(),
            ClientFrame::GetPrekeys {
                username,
                crypto_mode,
            } => self.get_prekeys(username, crypto_mode, false).await.into(),
            ClientFrame::GetContact {
                username,
                crypto_mode,
            } => self.get_prekeys(username, crypto_mode, true).await.into(),
            ClientFrame::GetIdentity { username } => self.get_identity(username).await.into(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(u) = &self.user {
            self.shared.hub.unregister(u.id, self.conn_id);
        }
    }
}
