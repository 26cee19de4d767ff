//! `send_message`: judged by its envelope's clear header ([`super::payload`]), checked against
//! the floors and the recipient, queued to the batch writer, answered `sent` when it commits.

use std::sync::Arc;
use std::time::Instant;

use nano_crypto::CryptoMode;
use nano_proto::{MessageId, Payload, RelayFrame, Username};
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::delivery::writer::WriteRequest;
use crate::error::RelayError;
use crate::storage::{NewMessage, StoreOutcome};

use super::payload;
use super::{Output, Pending, Session, error_frame};

impl Session {
    pub(super) async fn send(
        &mut self,
        recipient: Username,
        message: Payload,
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
    pub(super) async fn prepare_send(
        &mut self,
        recipient: Username,
        message: Payload,
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

    pub(super) async fn store(
        &mut self,
        recipient: Username,
        message: Payload,
        mode: CryptoMode,
        id: MessageId,
        received: Instant,
    ) -> Result<Pending, RelayError> {
        self.check_mode(mode)?;
        let entry = self
            .shared
            .user(recipient.as_str())
            .await?
            .ok_or(RelayError::UnknownRecipient)?;
        mode.at_least(entry.record.min_mode)?;
        let writer = self.shared.writer().ok_or(RelayError::Unavailable)?;
        let (tx, rx) = oneshot::channel();
        writer
            .submit(WriteRequest {
                msg: NewMessage {
                    message_id: id.0,
                    recipient_id: entry.record.id,
                    sender_id: self.user.as_ref().map(|u| u.id),
                    crypto_mode: mode,
                    timestamp_ms: now_ms(),
                    payload: message,
                },
                sender: self.user.as_ref().map(|u| u.name.clone()),
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
}
