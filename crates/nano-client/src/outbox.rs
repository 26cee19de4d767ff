//! Sends not yet answered by the relay: their frames in order (written again after a
//! reconnect, with the same ids), the callers waiting for each answer, and the retries of sends
//! the relay refused for now (`unavailable`, `rate_limited`).
//!
//! A send whose caller stopped waiting (its timeout passed, or it was dropped) is forgotten at
//! the next chance — before any retry or resend — so it is never delivered after its caller was
//! told it failed, and a long outage cannot pile sends up.

use std::collections::HashMap;
use std::time::Duration;

use nano_proto::{ClientFrame, MessageId};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{ClientError, Result};

/// First pause before writing again a send the relay refused for now; it doubles per refusal up
/// to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between retries of one send.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The unanswered sends of one client.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Frames written but not yet answered, in order.
    unanswered: Vec<(MessageId, ClientFrame)>,
    waiters: HashMap<MessageId, oneshot::Sender<Result<bool>>>,
    /// Refused for now: when to write each again, and how many refusals so far. An entry whose
    /// retry was written stays (for the backoff of a further refusal) with no due time.
    retries: HashMap<MessageId, (Option<Instant>, u32)>,
}

impl Outbox {
    /// Records a send about to be written.
    pub(crate) fn push(
        &mut self,
        id: MessageId,
        frame: ClientFrame,
        reply: oneshot::Sender<Result<bool>>,
    ) {
        self.unanswered.push((id, frame));
        self.waiters.insert(id, reply);
    }

    /// Whether `id` is a send still waiting for its answer.
    pub(crate) fn awaits(&self, id: &MessageId) -> bool {
        self.waiters.contains_key(id)
    }

    /// Hands `r` to `id`'s caller and forgets the send.
    pub(crate) fn answer(&mut self, id: &MessageId, r: Result<bool>) {
        self.forget(id);
        if let Some(w) = self.waiters.remove(id) {
            let _ = w.send(r);
        }
    }

    fn forget(&mut self, id: &MessageId) {
        self.retries.remove(id);
        self.unanswered.retain(|(i, _)| i != id);
    }

    /// Schedules `id` to be written again after a retryable refusal, with exponential backoff
    /// (100 ms doubling to 2 s), unless its caller stopped waiting.
    pub(crate) fn retry_later(&mut self, id: MessageId) {
        if self.waiters.get(&id).is_none_or(oneshot::Sender::is_closed) {
            self.waiters.remove(&id);
            self.forget(&id);
            return;
        }
        let refused = self.retries.get(&id).map_or(0, |(_, n)| *n) + 1;
        let delay = RETRY_MIN.saturating_mul(1 << refused.min(5)).min(RETRY_MAX);
        self.retries
            .insert(id, (Some(Instant::now() + delay), refused));
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retries.values().filter_map(|(at, _)| *at).min()
    }

    /// The frames of the sends whose retry is due now, their callers still waiting.
    pub(crate) fn due_retries(&mut self) -> Vec<ClientFrame> {
        self.forget_abandoned();
        let now = Instant::now();
        let mut due = std::collections::HashSet::new();
        for (id, (at, _)) in &mut self.retries {
            if at.is_some_and(|t| t <= now) {
                *at = None;
                due.insert(*id);
            }
        }
        self.unanswered
            .iter()
            .filter(|(id, _)| due.contains(id))
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Every unanswered frame, in order, for writing again on a new connection (pending
    /// retries are part of it).
    pub(crate) fn resend_all(&mut self) -> Vec<ClientFrame> {
        self.forget_abandoned();
        self.retries.clear();
        self.unanswered.iter().map(|(_, f)| f.clone()).collect()
    }

    /// Fails every send with `error()`.
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> ClientError) {
        self.retries.clear();
        self.unanswered.clear();
        for (_, w) in self.waiters.drain() {
            let _ = w.send(Err(error()));
        }
    }

    /// Drops the sends whose caller stopped waiting (timed out, or gone).
    pub(crate) fn forget_abandoned(&mut self) {
        self.waiters.retain(|_, w| !w.is_closed());
        let waiters = &self.waiters;
        self.unanswered.retain(|(id, _)| waiters.contains_key(id));
        self.retries.retain(|id, _| waiters.contains_key(id));
    }

    /// Sends waiting for an answer.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.unanswered.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> ClientFrame {
        ClientFrame::Fetch {
            after: Some(0),
            limit: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_send_is_retried_with_backoff_while_its_caller_waits() {
        let mut o = Outbox::default();
        let id = MessageId([1; 16]);
        let (tx, mut rx) = oneshot::channel();
        o.push(id, frame(), tx);
        o.retry_later(id);
        assert!(o.due_retries().is_empty(), "not due yet");
        let pause = |o: &Outbox| o.next_retry().map(|t| t - Instant::now());
        assert_eq!(pause(&o), Some(Duration::from_millis(200)));
        tokio::time::advance(RETRY_MAX).await;
        assert_eq!(o.due_retries().len(), 1);
        assert_eq!(
            o.next_retry(),
            None,
            "written: nothing due until refused again"
        );
        // Refused again: twice the pause.
        o.retry_later(id);
        assert_eq!(pause(&o), Some(Duration::from_millis(400)));
        o.answer(&id, Ok(false));
        assert!(!rx.try_recv().unwrap().unwrap());
        assert_eq!(o.len(), 0);
        assert_eq!(o.next_retry(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_whose_caller_gave_up_is_never_written_again() {
        let mut o = Outbox::default();
        let id = MessageId([2; 16]);
        let (tx, rx) = oneshot::channel();
        o.push(id, frame(), tx);
        o.retry_later(id);
        drop(rx);
        tokio::time::advance(RETRY_MAX).await;
        assert!(o.due_retries().is_empty());
        assert!(o.resend_all().is_empty());
        assert_eq!(o.len(), 0);
        // Refused again after the caller left: forgotten at once.
        let (tx, rx) = oneshot::channel();
        o.push(id, frame(), tx);
        drop(rx);
        o.retry_later(id);
        assert_eq!(o.len(), 0);
        assert!(!o.awaits(&id));
    }
}
