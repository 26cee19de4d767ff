//! The inbox: its first page at login, `fetch` for the next, pushes from the hub while live,
//! and `ack` / `read` marks (committed by the batch writer).

use nano_proto::{MessageId, RelayFrame, Username};

use crate::delivery::hub::SessionEvent;
use crate::error::RelayError;
use crate::storage::{Mark, MarkKind, StoredMessage};

use super::{PAGE, Session};

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

impl Session {
    /// Up to `limit` inbox messages after `after`, then (with `end_frame`) a `fetched` frame.
    pub(super) async fn page(
        &mut self,
        after: i64,
        limit: u32,
        end_frame: bool,
    ) -> Result<Vec<RelayFrame>, RelayError> {
        let uid = self.require_user()?.id;
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
    pub(crate) async fn on_event(&mut self, ev: SessionEvent) -> Vec<RelayFrame> {
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

    /// Applies an `ack` or `read` with the writer's next batch.
    pub(super) async fn mark(&mut self, ids: Vec<MessageId>, kind: MarkKind) -> Vec<RelayFrame> {
        let uid = match self.require_user() {
            Ok(u) => u.id,
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
}
