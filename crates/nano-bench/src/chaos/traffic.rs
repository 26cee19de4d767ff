//! The load of a chaos run and its books. Senders are real SDK clients (`nano_client::Client`,
//! with their own reconnect and resend) offered an open loop: one task per send at a fixed total
//! rate, so an outage stalls sends but never the offer. Receivers are SDK clients that ack what
//! they are handed; every hand-out is checked at the application level: a second hand-out of
//! an id to the same receiver (or of the same message under another id) is a duplicate shown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nano_client::{Client, ClientError, Incoming, ModeChoice, Received, SendReceipt};
use nano_crypto::{CryptoMode, OsRng};
use nano_proto::MessageId;
use rand_core::RngCore;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::load::run::{Pacer, error_code};
use crate::load::setup::{OnIncoming, User};

/// Most sends in flight at once; beyond it a slot of the offer is skipped (and counted), so a
/// long outage cannot pile up memory without bound.
pub(crate) const MAX_IN_FLIGHT: u64 = 20_000;
/// A send answered `sent` later than this after it was made counts as late (seconds).
const LATE: Duration = Duration::from_secs(1);
/// Distinct send error texts kept for the report.
const ERROR_SAMPLES: usize = 10;

/// What only one task at a time may touch.
#[derive(Debug, Default)]
struct Books {
    /// Sequence numbers of the sends answered `sent`.
    acked: HashSet<u64>,
    /// Per delivered sequence number: (delivered at, send started at), seconds since the epoch.
    delivered: HashMap<u64, (f64, f64)>,
    /// (receiver, id) of every message handed to the application.
    shown: HashSet<(usize, MessageId)>,
    /// Failed sends by code.
    errors: BTreeMap<String, u64>,
    /// Distinct texts of send errors (at most [`ERROR_SAMPLES`]).
    samples: Vec<String>,
}

/// Counters shared by every task of a run; times are seconds since the load started.
#[derive(Debug)]
pub(crate) struct Tally {
    epoch: std::sync::OnceLock<Instant>,
    seq: AtomicU64,
    sent: AtomicU64,
    not_offered: AtomicU64,
    in_flight: AtomicU64,
    late: AtomicU64,
    /// Longest successful send, in microseconds.
    send_us_max: AtomicU64,
    duplicates_shown: AtomicU64,
    misrouted: AtomicU64,
    rejected: AtomicU64,
    unparsable: AtomicU64,
    books: Mutex<Books>,
}

/// The run's figures (flattened into the report's JSON).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Counts {
    /// Sends made.
    pub(crate) messages_sent: u64,
    /// Sends answered `sent` (durably stored).
    pub(crate) messages_acked: u64,
    /// Distinct messages handed to a receiver.
    pub(crate) messages_delivered: u64,
    /// Acknowledged sends never delivered.
    pub(crate) lost: u64,
    /// Hand-outs of a message the receiver had been handed already.
    pub(crate) duplicates_shown: u64,
    /// Delivered messages whose send was not answered `sent` (it failed, yet was stored).
    pub(crate) delivered_unacked: u64,
    /// Messages handed to a receiver they were not addressed to.
    pub(crate) misrouted: u64,
    /// Messages the SDK rejected (verification or decryption failed).
    pub(crate) rejected: u64,
    /// Hand-outs whose plaintext was not one of ours.
    pub(crate) unparsable: u64,
    /// Sends that returned an error.
    pub(crate) sends_failed: u64,
    /// Their error codes (relay wire code, or `timeout`, `unreachable`, `closed`, …).
    pub(crate) send_errors: BTreeMap<String, u64>,
    /// Distinct texts of those errors (`ClientError` as displayed), at most 10.
    pub(crate) send_error_samples: Vec<String>,
    /// Slots of the offer skipped because [`MAX_IN_FLIGHT`] sends were in flight.
    pub(crate) sends_not_offered: u64,
    /// Sends answered `sent` more than 1 s after they were made.
    pub(crate) sends_late: u64,
    /// Longest successful send, seconds (sealing, outage and resends included).
    pub(crate) send_s_max: f64,
    /// From the start of a send to its delivery, seconds: median, 99th percentile, maximum.
    pub(crate) delivery_s_p50: f64,
    pub(crate) delivery_s_p99: f64,
    pub(crate) delivery_s_max: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tally {
    /// Empty books.
    pub(crate) fn new() -> Self {
        Self {
            epoch: std::sync::OnceLock::new(),
            seq: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            not_offered: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            late: AtomicU64::new(0),
            send_us_max: AtomicU64::new(0),
            duplicates_shown: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unparsable: AtomicU64::new(0),
            books: Mutex::new(Books::default()),
        }
    }

    /// The instant times count from: the first call's (made when the load starts).
    pub(crate) fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Seconds since the epoch.
    pub(crate) fn now_s(&self) -> f64 {
        self.epoch().elapsed().as_secs_f64()
    }

    /// (sent, answered `sent`, delivered, in flight) so far, for progress lines.
    pub(crate) fn progress(&self) -> (u64, u64, u64, u64) {
        let b = lock(&self.books);
        (
            self.sent.load(Ordering::Relaxed),
            b.acked.len() as u64,
            b.delivered.len() as u64,
            self.in_flight.load(Ordering::Relaxed),
        )
    }

    /// The plaintext of the next message to user `to`: `chaos <seq> <send µs> <to>`.
    fn next_message(&self, to: usize) -> (u64, String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let us = self.epoch().elapsed().as_micros();
        (seq, format!("chaos {seq} {us} {to}"))
    }

    /// Books the outcome of send `seq`, made at `started`.
    fn answered(&self, seq: u64, started: Instant, r: Result<SendReceipt, ClientError>) {
        match r {
            Ok(_) => {
                let took = started.elapsed();
                if took > LATE {
                    self.late.fetch_add(1, Ordering::Relaxed);
                }
                let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.send_us_max.fetch_max(us, Ordering::Relaxed);
                lock(&self.books).acked.insert(seq);
            }
            Err(e) => {
                let text = e.to_string();
                let mut b = lock(&self.books);
                *b.errors.entry(error_code(&e)).or_default() += 1;
                if b.samples.len() < ERROR_SAMPLES && !b.samples.contains(&text) {
                    b.samples.push(text);
                }
            }
        }
    }

    /// Books a message handed to receiver `who`.
    fn shown(&self, who: usize, m: &Received) {
        let at = self.now_s();
        let text = String::from_utf8_lossy(&m.plaintext);
        let mut it = text.split(' ').skip(1).map(str::parse::<u64>);
        let (Some(Ok(seq)), Some(Ok(us)), Some(Ok(to))) = (it.next(), it.next(), it.next()) else {
            self.unparsable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if usize::try_from(to).ok() != Some(who) {
            self.misrouted.fetch_add(1, Ordering::Relaxed);
        }
        let mut b = lock(&self.books);
        let again = !b.shown.insert((who, m.id)) || b.delivered.contains_key(&seq);
        if again {
            self.duplicates_shown.fetch_add(1, Ordering::Relaxed);
        } else {
            b.delivered.insert(seq, (at, us as f64 / 1e6));
        }
    }

    /// Acknowledged sends not delivered (yet).
    pub(crate) fn lost(&self) -> u64 {
        let b = lock(&self.books);
        b.acked
            .iter()
            .filter(|s| !b.delivered.contains_key(s))
            .count() as u64
    }

    /// Seconds from `at` to the first delivery of a message whose send started at or after
    /// `at`; `None` if there is none.
    pub(crate) fn first_delivery_after(&self, at: f64) -> Option<f64> {
        lock(&self.books)
            .delivered
            .values()
            .filter(|(_, sent)| *sent >= at)
            .map(|(got, _)| got - at)
            .min_by(f64::total_cmp)
    }

    /// The figures so far.
    pub(crate) fn counts(&self) -> Counts {
        let b = lock(&self.books);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let [p50, p99, max] = quantiles(b.delivered.values().map(|(got, sent)| got - sent));
        Counts {
            messages_sent: n(&self.sent),
            messages_acked: b.acked.len() as u64,
            messages_delivered: b.delivered.len() as u64,
            lost: b
                .acked
                .iter()
                .filter(|s| !b.delivered.contains_key(s))
                .count() as u64,
            duplicates_shown: n(&self.duplicates_shown),
            delivered_unacked: b.delivered.keys().filter(|s| !b.acked.contains(s)).count() as u64,
            misrouted: n(&self.misrouted),
            rejected: n(&self.rejected),
            unparsable: n(&self.unparsable),
            sends_failed: b.errors.values().sum(),
            send_errors: b.errors.clone(),
            send_error_samples: b.samples.clone(),
            sends_not_offered: n(&self.not_offered),
            sends_late: n(&self.late),
            send_s_max: n(&self.send_us_max) as f64 / 1e6,
            delivery_s_p50: p50,
            delivery_s_p99: p99,
            delivery_s_max: max,
        }
    }
}

/// Median, 99th percentile and maximum of `v` (zeros when empty).
fn quantiles(v: impl Iterator<Item = f64>) -> [f64; 3] {
    let mut v: Vec<f64> = v.collect();
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.99), v[v.len() - 1]]
}

/// What receivers do with their stream: book every hand-out and rejection (they ack too).
pub(crate) fn on_incoming(tally: Arc<Tally>) -> OnIncoming {
    Arc::new(move |who, item| match item {
        Incoming::Message(m) => tally.shown(who, m),
        Incoming::Rejected { .. }
        | Incoming::Unverifiable { .. }
        | Incoming::SessionReset { .. } => {
            tally.rejected.fetch_add(1, Ordering::Relaxed);
        }
        Incoming::UpToDate | Incoming::Redelivered { .. } => {}
    })
}

/// One send from `client` to user `to`, booked.
async fn send_one(tally: Arc<Tally>, client: Client, to: usize, name: String, mode: CryptoMode) {
    let (seq, text) = tally.next_message(to);
    let started = Instant::now();
    let r = client
        .send(&name, text.as_bytes(), ModeChoice::Explicit(mode))
        .await;
    tally.answered(seq, started, r);
    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// The open-loop offer: `rate` sends per second in all, evenly spaced, round-robin over
/// `clients`, each to a random user, until `stop`. Returns the sends still in flight.
pub(crate) async fn offer(
    tally: Arc<Tally>,
    clients: Vec<Client>,
    users: Arc<Vec<User>>,
    rate: f64,
    mode: CryptoMode,
    stop: Arc<AtomicBool>,
) -> JoinSet<()> {
    let pacer = Pacer::new(rate);
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) && !clients.is_empty() {
        pacer.wait().await;
        while tasks.try_join_next().is_some() {}
        if tally.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            tally.not_offered.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let to = (OsRng.next_u64() % users.len() as u64) as usize;
        let client = clients[next % clients.len()].clone();
        next += 1;
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        let name = users[to].name.clone();
        tasks.spawn(send_one(Arc::clone(&tally), client, to, name, mode));
    }
    tasks
}

/// Waits until every acknowledged send has been delivered, or nothing new arrived for `quiet`,
/// or `limit` passed.
pub(crate) async fn drain(tally: &Tally, quiet: Duration, limit: Duration) {
    let end = Instant::now() + limit;
    let mut last = (tally.progress().2, Instant::now());
    while tally.lost() > 0 && last.1.elapsed() < quiet && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = tally.progress().2;
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}
