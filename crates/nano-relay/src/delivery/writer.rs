//! The batch writer: the third stage of the pipeline. Sessions queue messages on a bounded
//! channel; one thread of its own commits them in batches, one transaction each, then answers
//! every sender and hands each stored message to the hub for push delivery.
//!
//! Acks and read receipts have a queue of their own and ride in the same transactions: each
//! commit takes the messages queued and the marks queued, or the marks alone when no message
//! waits: half the commits, and the pages both touch are written to the log once.
//!
//! Batching (`message_batch_size`, `message_batch_timeout_ms`): a batch takes everything queued,
//! up to `message_batch_size`. Under light load a message is committed at once, never held back
//! for company; after a full batch (sustained load) the writer lingers up to
//! `message_batch_timeout_ms` for the next batch to fill, trading a bounded delay for fewer
//! commits. Messages arriving during a commit wait for the next one (group commit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nano_proto::Username;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::delivery::fanout::Fanout;
use crate::delivery::hub::Hub;
use crate::error::RelayError;
use crate::storage::{Mark, MarkKind, NewMessage, Storage, StoreOutcome, StoredMessage};
use crate::telemetry::metrics::Metrics;

/// One message to store, and where to send the outcome.
#[derive(Debug)]
pub struct WriteRequest {
    /// The row.
    pub msg: NewMessage,
    /// The sender's name for the push frame (`None` for anonymous sends).
    pub sender: Option<Username>,
    /// When the relay read the frame (for the processing-duration metric).
    pub received: Instant,
    /// The outcome.
    pub reply: oneshot::Sender<Result<StoreOutcome, RelayError>>,
}

/// An `ack` or `read` frame to apply, and where to send how many rows it changed.
#[derive(Debug)]
pub struct MarkRequest {
    /// What to mark.
    pub mark: Mark,
    /// The outcome.
    pub reply: oneshot::Sender<Result<u64, RelayError>>,
}

/// Settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most messages per transaction.
    pub batch_size: usize,
    /// Longest wait for a batch to fill under sustained load.
    pub batch_timeout: Duration,
    /// Undelivered messages one inbox may hold.
    pub inbox_quota: u64,
    /// Queue capacity (messages waiting for a commit).
    pub queue_capacity: usize,
}

/// The sending side, cloned into every session.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
    marks: mpsc::Sender<MarkRequest>,
    metrics: Metrics,
}

impl WriterHandle {
    /// Queues `req`, waiting for room; fails only when the writer has stopped.
    pub async fn submit(&self, req: WriteRequest) -> Result<(), RelayError> {
        self.tx
            .send(req)
            .await
            .map_err(|_| RelayError::Unavailable)?;
        self.metrics
            .write_queue_depth
            .set(i64::try_from(self.depth()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Applies `mark` with the next batch of marks; how many rows it changed.
    pub async fn mark(&self, mark: Mark) -> Result<u64, RelayError> {
        let (reply, rx) = oneshot::channel();
        self.marks
            .send(MarkRequest { mark, reply })
            .await
            .map_err(|_| RelayError::Unavailable)?;
        rx.await.map_err(|_| RelayError::Unavailable)?
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Resolves when the writer has stopped; `Err` when its thread ended without finishing (a
/// panic).
pub type Stopped = oneshot::Receiver<()>;

/// Starts the writer on a thread of its own: [`Writer::new`], then [`Writer::start`].
///
/// # Errors
/// As [`Writer::start`].
pub fn spawn(
    storage: Arc<dyn Storage>,
    cfg: WriterConfig,
    hub: Arc<Hub>,
    fanout: Option<Arc<Fanout>>,
    metrics: Metrics,
) -> std::io::Result<(WriterHandle, Stopped)> {
    let (handle, writer) = Writer::new(storage, cfg, hub, fanout, metrics);
    Ok((handle, writer.start()?))
}

/// A writer not started yet: its queues exist, so requests can be queued before it looks.
#[derive(Debug)]
pub struct Writer {
    queues: Queues,
    storage: Arc<dyn Storage>,
    cfg: WriterConfig,
    hub: Arc<Hub>,
    fanout: Option<Arc<Fanout>>,
    metrics: Metrics,
}

impl Writer {
    /// The writer's queues (each of `queue_capacity` requests) and the handle that feeds them.
    pub fn new(
        storage: Arc<dyn Storage>,
        cfg: WriterConfig,
        hub: Arc<Hub>,
        fanout: Option<Arc<Fanout>>,
        metrics: Metrics,
    ) -> (WriterHandle, Self) {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (marks, marks_rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let handle = WriterHandle {
            tx,
            marks,
            metrics: metrics.clone(),
        };
        let queues = Queues {
            stores: rx,
            marks: marks_rx,
            stores_open: true,
            marks_open: true,
        };
        let writer = Self {
            queues,
            storage,
            cfg,
            hub,
            fanout,
            metrics,
        };
        (handle, writer)
    }

    /// Runs the writer on a thread of its own (`nano-writer`): the batching loop waits on a
    /// single-threaded runtime, each commit runs on that thread, so a commit costs no hand-off to a
    /// blocking pool and back and the SQLite connection stays warm in one core's cache. It runs
    /// until every [`WriterHandle`] is dropped and both queues are empty.
    ///
    /// # Errors
    /// The OS refused the thread or the runtime's timer.
    pub fn start(self) -> std::io::Result<Stopped> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let (done, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("nano-writer".into())
            .spawn(move || {
                run(self, &rt);
                let _ = done.send(());
            })?;
        Ok(stopped)
    }
}

/// The writer's two queues; a closed one is left alone until both are.
#[derive(Debug)]
struct Queues {
    stores: mpsc::Receiver<WriteRequest>,
    marks: mpsc::Receiver<MarkRequest>,
    stores_open: bool,
    marks_open: bool,
}

impl Queues {
    /// The next transaction's work: the messages queued, up to `message_batch_size` (after a
    /// full batch lingering up to `message_batch_timeout_ms` for the next to fill), and the marks
    /// queued by then, up to as many. `None` once both queues are closed and empty.
    async fn next(
        &mut self,
        cfg: &WriterConfig,
        linger: bool,
    ) -> Option<(Vec<WriteRequest>, Vec<MarkRequest>)> {
        let mut stores = Vec::new();
        let mut marks = Vec::new();
        while stores.is_empty() && marks.is_empty() {
            if !self.stores_open && !self.marks_open {
                return None;
            }
            tokio::select! {
                r = self.stores.recv(), if self.stores_open => match r {
                    Some(r) => stores.push(r),
                    None => self.stores_open = false,
                },
                r = self.marks.recv(), if self.marks_open => match r {
                    Some(r) => marks.push(r),
                    None => self.marks_open = false,
                },
            }
        }
        let deadline = tokio::time::Instant::now() + cfg.batch_timeout;
        let linger = linger && !stores.is_empty();
        loop {
            take_queued(&mut self.stores, &mut stores, cfg.batch_size);
            if stores.len() >= cfg.batch_size || !linger {
                break;
            }
            match tokio::time::timeout_at(deadline, self.stores.recv()).await {
                Ok(Some(r)) => stores.push(r),
                _ => break,
            }
        }
        take_queued(&mut self.marks, &mut marks, cfg.batch_size);
        Some((stores, marks))
    }
}

/// Moves what `rx` holds now into `into`, until it holds `limit`.
fn take_queued<T>(rx: &mut mpsc::Receiver<T>, into: &mut Vec<T>, limit: usize) {
    while into.len() < limit {
        match rx.try_recv() {
            Ok(r) => into.push(r),
            Err(_) => break,
        }
    }
}

/// Each message's outcome, or why none of the batch could be stored.
type StoredOutcomes = Result<Vec<Result<StoreOutcome, RelayError>>, RelayError>;

/// Commits `msgs` and `marks` in one transaction where the backend can
/// ([`Storage::store_and_mark`]). If that fails, each part alone, then each message or mark
/// alone, so one row the database refuses cannot fail the others; not while the database is
/// unreachable. One result per message and per mark, in order.
fn commit(
    storage: &dyn Storage,
    msgs: &[NewMessage],
    quota: u64,
    marks: Vec<Mark>,
    now: i64,
) -> (StoredOutcomes, Vec<Result<u64, RelayError>>) {
    let (stored, marked) = match (msgs.is_empty(), marks.is_empty()) {
        (false, false) => match storage.store_and_mark(msgs, quota, &marks, now) {
            // A shared transaction failed: either part may be the cause, so each on its own.
            (Err(e), Err(_)) if !matches!(e, RelayError::Unreachable(_)) => (
                storage.store_batch(msgs, quota),
                storage.mark_batch(&marks, now),
            ),
            parts => parts,
        },
        (false, true) => (storage.store_batch(msgs, quota), Ok(Vec::new())),
        (true, false) => (Ok(Vec::new()), storage.mark_batch(&marks, now)),
        (true, true) => (Ok(Vec::new()), Ok(Vec::new())),
    };
    let stored = match stored {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        // Nothing to learn from retrying one by one while the database is away.
        Err(e) if msgs.len() == 1 || matches!(e, RelayError::Unreachable(_)) => Err(e),
        Err(e) => {
            crate::telemetry::log_limit::warn(
                "batch commit failed; committing its messages one by one",
                &e,
            );
            Ok(msgs
                .iter()
                .map(|m| {
                    storage
                        .store_batch(std::slice::from_ref(m), quota)
                        .and_then(|o| {
                            o.into_iter().next().ok_or_else(|| {
                                RelayError::Internal("no outcome for a stored message".into())
                            })
                        })
                })
                .collect())
        }
    };
    let marked = match marked {
        Ok(n) => n.into_iter().map(Ok).collect(),
        Err(e) if marks.len() == 1 || matches!(e, RelayError::Unreachable(_)) => {
            marks.iter().map(|_| Err(e.clone())).collect()
        }
        Err(_) => marks
            .into_iter()
            .map(|m| storage.mark_one(m, now))
            .collect(),
    };
    (stored, marked)
}

/// The writer's loop: waits for work on `rt` (the queues and the linger timer), then commits
/// and answers outside it, as blocking code must (the PostgreSQL client runs a runtime of its
/// own, which cannot start inside another).
fn run(writer: Writer, rt: &tokio::runtime::Runtime) {
    let Writer {
        mut queues,
        storage,
        cfg,
        hub,
        fanout,
        metrics,
    } = writer;
    let mut linger = false;
    let mut pushed = Pushed::default();
    while let Some((batch, marks)) = rt.block_on(queues.next(&cfg, linger)) {
        linger = batch.len() >= cfg.batch_size;
        metrics
            .write_queue_depth
            .set(i64::try_from(queues.stores.len()).unwrap_or(i64::MAX));
        let env = StoreEnv {
            storage: &storage,
            cfg: &cfg,
            hub: &hub,
            fanout: fanout.as_deref(),
            metrics: &metrics,
        };
        write(&env, &mut pushed, batch, marks);
    }
    tracing::debug!("batch writer drained");
}

/// Answers each mark with how many rows it changed (or why it failed).
fn answer_marks(
    replies: Vec<oneshot::Sender<Result<u64, RelayError>>>,
    kinds: Vec<MarkKind>,
    result: Vec<Result<u64, RelayError>>,
    metrics: &Metrics,
) {
    let mut result = result.into_iter();
    for (reply, kind) in replies.into_iter().zip(kinds) {
        let r = result
            .next()
            .unwrap_or_else(|| Err(RelayError::Internal("mark task failed".into())));
        if let (Ok(n), MarkKind::Ack) = (&r, kind) {
            metrics.messages_acked.inc_by(*n);
        }
        let _ = reply.send(r);
    }
}

/// Sequence numbers this writer handed to the hub lately (the most recent [`PUSHED_KEPT`]): a
/// resend of one of them needs no second push.
#[derive(Debug, Default)]
struct Pushed {
    set: std::collections::HashSet<i64>,
    order: std::collections::VecDeque<i64>,
}

/// Pushed sequence numbers remembered (8 bytes each, twice): 512 KiB at most.
const PUSHED_KEPT: usize = 32_768;

impl Pushed {
    fn insert(&mut self, seq: i64) {
        if self.set.insert(seq) {
            self.order.push_back(seq);
            if self.order.len() > PUSHED_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// What storing a batch works with.
struct StoreEnv<'a> {
    storage: &'a Arc<dyn Storage>,
    cfg: &'a WriterConfig,
    hub: &'a Hub,
    fanout: Option<&'a Fanout>,
    metrics: &'a Metrics,
}

/// Pushes again each (recipient, seq) found stored by a resend, if it is still in the inbox: a
/// commit whose answer was lost (the connection dropped during COMMIT) may have stored it
/// without the writer handing it to the hub, and the recipient's live session would never
/// read below its cursor. Resends are rare; each costs one inbox read. Failures are left to
/// the recipient's next login, which reads the whole inbox.
fn redeliver(storage: &dyn Storage, hub: &Hub, duplicates: &[(i64, i64)]) {
    for &(recipient, seq) in duplicates {
        let first = storage
            .pending(recipient, seq - 1, 1)
            .ok()
            .and_then(|page| page.into_iter().next());
        if let Some(m) = first.filter(|m| m.seq == seq) {
            hub.redeliver(recipient, &Arc::new(m));
        }
    }
}

/// Commits a batch of messages and marks, answers the marks and the messages' senders, and
/// hands the stored messages to the hub.
fn write(
    env: &StoreEnv<'_>,
    pushed: &mut Pushed,
    batch: Vec<WriteRequest>,
    marks: Vec<MarkRequest>,
) {
    let StoreEnv {
        storage,
        cfg,
        hub,
        fanout,
        metrics,
    } = *env;
    let (msgs, rest): (Vec<NewMessage>, Vec<_>) = batch
        .into_iter()
        .map(|r| (r.msg, (r.sender, r.received, r.reply)))
        .unzip();
    let (marks, mark_replies): (Vec<Mark>, Vec<_>) =
        marks.into_iter().map(|r| (r.mark, r.reply)).unzip();
    let kinds: Vec<MarkKind> = marks.iter().map(|m| m.kind).collect();
    let started = Instant::now();
    // On the writer's own thread: blocking here holds up nothing but the next batch.
    let (outcome, marked) = commit(&**storage, &msgs, cfg.inbox_quota, marks, now_ms());
    answer_marks(mark_replies, kinds, marked, metrics);
    if msgs.is_empty() {
        return;
    }
    metrics
        .batch_commit_duration
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(msgs.len() as f64);
    match outcome {
        Ok(outcomes) => {
            let mut woken = Vec::new();
            let mut duplicates = Vec::new();
            for ((msg, (sender, received, reply)), outcome) in
                msgs.into_iter().zip(rest).zip(outcomes)
            {
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                };
                if let StoreOutcome::Stored(seq) = outcome {
                    metrics.message_processed(msg.crypto_mode, received.elapsed());
                    let recipient = msg.recipient_id;
                    let stored = Arc::new(StoredMessage {
                        seq,
                        message_id: msg.message_id,
                        sender: sender.map(|s| s.as_str().to_owned()),
                        crypto_mode: msg.crypto_mode,
                        timestamp_ms: msg.timestamp_ms,
                        payload: msg.payload,
                        read_at: None,
                    });
                    hub.deliver(recipient, &stored);
                    pushed.insert(seq);
                    woken.push(recipient);
                }
                if let StoreOutcome::Duplicate(seq) = outcome {
                    if pushed.set.contains(&seq) {
                        let _ = reply.send(Ok(outcome));
                        continue;
                    }
                    // Answered once the original is handed over again.
                    duplicates.push((msg.recipient_id, seq, reply));
                    continue;
                }
                let _ = reply.send(Ok(outcome));
            }
            if !duplicates.is_empty() {
                let found: Vec<(i64, i64)> = duplicates.iter().map(|(r, s, _)| (*r, *s)).collect();
                redeliver(&**storage, hub, &found);
                for (_, seq, reply) in duplicates {
                    pushed.insert(seq);
                    let _ = reply.send(Ok(StoreOutcome::Duplicate(seq)));
                }
            }
            if let (Some(f), false) = (fanout, woken.is_empty()) {
                f.announce_deliveries(woken);
            }
        }
        Err(e) => {
            e.report();
            for (_, _, reply) in rest {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
