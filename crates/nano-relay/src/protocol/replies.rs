//! The pending-reply queue: answers to `send_message` that arrive when their batch commits,
//! written in the order the sends came. At most [`MAX_IN_FLIGHT`] wait per connection; while
//! the queue is full the connection reads no more frames.
//!
//! The queue allocates nothing until the first send (an idle connection holds no queue).

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use nano_proto::RelayFrame;

use super::Pending;

/// Unanswered `send_message` frames one connection may have in flight.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// Answers awaited, in order.
#[derive(Default)]
pub(crate) struct Replies {
    queue: Option<FuturesOrdered<Pending>>,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies").field("len", &self.len()).finish()
    }
}

impl Replies {
    /// Adds an awaited answer.
    pub(crate) fn push(&mut self, reply: Pending) {
        self.queue
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(reply);
    }

    /// Answers awaited.
    pub(crate) fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, FuturesOrdered::len)
    }

    /// Whether no answer is awaited.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the connection must stop reading until answers go out.
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= MAX_IN_FLIGHT
    }

    /// The next answers in order: waits for the first, then takes those ready with it (the
    /// answers of one committed batch arrive together), at most `max`. Empty when none is
    /// awaited (then it never completes: poll it only while [`Replies::is_empty`] is false).
    pub(crate) async fn ready(&mut self, max: usize) -> Vec<RelayFrame> {
        let Some(q) = self.queue.as_mut() else {
            return std::future::pending().await;
        };
        let Some(first) = q.next().await else {
            return std::future::pending().await;
        };
        let mut frames = vec![first];
        while frames.len() < max {
            match q.next().now_or_never() {
                Some(Some(f)) => frames.push(f),
                _ => break,
            }
        }
        if q.is_empty() {
            // An idle connection holds no queue.
            self.queue = None;
        }
        frames
    }

    /// Every awaited answer, in order (at shutdown: committed answers still go out).
    pub(crate) async fn drain(&mut self) -> Vec<RelayFrame> {
        match self.queue.take() {
            Some(q) => q.collect().await,
            None => Vec::new(),
        }
    }
}
