//! The three ways to load a relay: the guide's phased scenario, a closed-loop throughput run,
//! and holding idle authenticated connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nano_client::{Incoming, ModeChoice};
use nano_crypto::{CryptoMode, OsRng, PublicBundle};
use rand_core::RngCore;

use crate::load::report::Offered;
use crate::load::setup::{User, connect};
use crate::load::stats::Stats;

/// One phase of the scenario.
#[derive(Debug, Clone)]
pub(crate) struct Phase {
    /// Its name.
    pub(crate) name: &'static str,
    /// Length in seconds (before time scaling).
    pub(crate) seconds: f64,
    /// Virtual users arriving per second.
    pub(crate) rate: f64,
}

/// The guide's phases, with the peak's arrival rate multiplied by `spike`.
pub(crate) fn guide_phases(spike: f64) -> Vec<Phase> {
    vec![
        Phase {
            name: "warm-up",
            seconds: 60.0,
            rate: 10.0,
        },
        Phase {
            name: "sustained",
            seconds: 300.0,
            rate: 50.0,
        },
        Phase {
            name: "peak",
            seconds: 60.0,
            rate: 100.0 * spike,
        },
    ]
}

/// What every virtual user needs.
pub(crate) struct Ctx {
    pub(crate) api: String,
    pub(crate) ws_url: String,
    pub(crate) relay: PublicBundle,
    pub(crate) users: Arc<Vec<User>>,
    /// Identities the sending clients log in as (never recipients).
    pub(crate) senders: Arc<Vec<User>>,
    pub(crate) mode: CryptoMode,
    pub(crate) stats: Arc<Stats>,
    pub(crate) epoch: Instant,
    /// Open connections of virtual users (for the report).
    pub(crate) open: AtomicU64,
    /// With `--rate`: the sends' schedule.
    pub(crate) pacer: Option<Pacer>,
    /// `--sealed`: sealed envelopes instead of sessions.
    pub(crate) sealed: bool,
}

/// Spaces sends evenly at a fixed total rate: each send takes the next free slot. A sender
/// that falls behind does not burst to catch up, so the offered rate never exceeds the target.
#[derive(Debug)]
pub(crate) struct Pacer {
    next: std::sync::Mutex<tokio::time::Instant>,
    every: Duration,
}

impl Pacer {
    /// Slots `1 / rate` seconds apart.
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
            every: Duration::from_secs_f64(1.0 / rate.max(0.001)),
        }
    }

    /// Waits for this send's slot.
    pub(crate) async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.every;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl Ctx {
    /// A random recipient.
    fn pick(&self) -> &User {
        &self.users[(OsRng.next_u64() % self.users.len() as u64) as usize]
    }

    /// A random sending identity.
    pub(crate) fn sender(&self) -> &User {
        &self.senders[(OsRng.next_u64() % self.senders.len() as u64) as usize]
    }

    fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends one message from `client` to a random user, recording the outcome.
    async fn send_one(&self, client: &nano_client::Client) {
        self.send_to(client, &self.pick().name).await;
    }

    /// Sends one message from `client` to `to`, recording the outcome.
    async fn send_to(&self, client: &nano_client::Client, to: &str) {
        let (seq, text) = self.stats.next_message(self.epoch);
        let choice = ModeChoice::Explicit(self.mode);
        let sent = if self.sealed {
            client.send_sealed(to, text.as_bytes(), choice).await
        } else {
            client.send(to, text.as_bytes(), choice).await
        };
        match sent {
            Ok(_) => self.stats.acked(seq),
            Err(e) => self.stats.error(&error_code(&e)),
        }
    }
}

/// A short name for what a send failed with: the relay's wire code, or the kind of failure on
/// the client's side (`timeout`, `unreachable`, `closed`, `protocol`, `client`).
pub(crate) fn error_code(e: &nano_client::ClientError) -> String {
    use nano_client::ClientError;
    match e {
        ClientError::Relay { code, .. } => code.as_str().to_owned(),
        ClientError::Timeout(_) => "timeout".into(),
        ClientError::Unreachable { .. } => "unreachable".into(),
        ClientError::Closed => "closed".into(),
        ClientError::Protocol(_) => "protocol".into(),
        _ => "client".into(),
    }
}

/// A sending virtual user: connects as a random user and sends `count` messages `gap` apart.
async fn sender(ctx: Arc<Ctx>, count: u32, gap: Duration) {
    let me = ctx.sender();
    let client = match connect(&ctx.api, me, None).await {
        Ok((c, _rx)) => c,
        Err(e) => {
            ctx.stats
                .error(&crate::load::setup::error_kind("connect", &e));
            return;
        }
    };
    ctx.opened();
    let mut next = tokio::time::Instant::now();
    for _ in 0..count {
        ctx.send_one(&client).await;
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    client.close().await;
    ctx.closed();
}

async fn key_exchanger(ctx: Arc<Ctx>) {
    ctx.opened();
    match crate::load::kex::exchange(&ctx.ws_url, &ctx.relay, ctx.mode).await {
        Ok(()) => {
            ctx.stats.key_exchanges.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => ctx.stats.error("key_exchange"),
    }
    ctx.closed();
}

/// Runs `phases` scaled by `scale`: arrivals at each phase's rate, 80 % senders of `count`
/// messages one (scaled) second apart, 20 % key exchanges. Returns when every user is done.
pub(crate) async fn scenario(
    ctx: Arc<Ctx>,
    phases: &[Phase],
    scale: f64,
    count: u32,
    progress: impl Fn(&str),
) -> Vec<Offered> {
    let gap = Duration::from_secs_f64(scale.max(0.0001));
    let mut tasks = tokio::task::JoinSet::new();
    let mut at = tokio::time::Instant::now();
    let mut offered = Vec::with_capacity(phases.len());
    for p in phases {
        let arrivals = (p.seconds * scale * p.rate).round() as u64;
        let every = Duration::from_secs_f64(1.0 / p.rate.max(0.001));
        progress(p.name);
        let (mut senders, mut exchangers) = (0u64, 0u64);
        for _ in 0..arrivals {
            tokio::time::sleep_until(at).await;
            at += every;
            let c = Arc::clone(&ctx);
            if OsRng.next_u32() % 100 < 80 {
                senders += 1;
                tasks.spawn(sender(c, count, gap));
            } else {
                exchangers += 1;
                tasks.spawn(key_exchanger(c));
            }
            while tasks.try_join_next().is_some() {}
        }
        let seconds = p.seconds * scale;
        let messages = senders * u64::from(count);
        offered.push(Offered {
            phase: p.name.to_owned(),
            seconds,
            sender_users: senders,
            key_exchange_users: exchangers,
            messages,
            msgs_per_s: messages as f64 / seconds.max(0.001),
        });
    }
    progress("draining");
    while tasks.join_next().await.is_some() {}
    offered
}

/// Closed loop: `connections` clients, each keeping `pipeline` sends in flight, for `duration`.
/// Each client is a sender of its own (sender `k`) in conversations with its share of the
/// users (`k`, `k + connections`, …), picked at random per message: a session per pair, as
/// between people who write to each other, rather than a first contact per message.
///
/// With `warm_up`, every client first writes once to each of its contacts (starting every
/// session), all of it received before the timed phase starts; those messages count as sent
/// and received but not in the latency percentiles or the throughput. Returns when the timed
/// phase started and the messages received by then.
pub(crate) async fn max_throughput(
    ctx: Arc<Ctx>,
    connections: usize,
    pipeline: usize,
    duration: Duration,
    warm_up: bool,
) -> (Instant, u64) {
    let warmed = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let go = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..connections {
        let (ctx, warmed, go) = (Arc::clone(&ctx), Arc::clone(&warmed), Arc::clone(&go));
        tasks.spawn(async move {
            let me = &ctx.senders[k % ctx.senders.len()];
            let contacts: Arc<Vec<String>> = Arc::new(
                ctx.users
                    .iter()
                    .skip(k % ctx.users.len())
                    .step_by(connections)
                    .map(|u| u.name.clone())
                    .collect(),
            );
            let connected = connect(&ctx.api, me, None).await;
            if warm_up && let Ok((client, _)) = &connected {
                let gate = Arc::new(tokio::sync::Semaphore::new(pipeline.max(1)));
                let mut first = tokio::task::JoinSet::new();
                for to in contacts.iter() {
                    let (ctx, client, gate) = (Arc::clone(&ctx), client.clone(), Arc::clone(&gate));
                    let to = to.to_owned();
                    first.spawn(async move {
                        let _turn = gate.acquire().await;
                        ctx.send_to(&client, &to).await;
                    });
                }
                while first.join_next().await.is_some() {}
            }
            warmed.wait().await;
            go.wait().await;
            let Ok((client, _)) = connected else {
                ctx.stats.error("connect");
                return;
            };
            let stop = tokio::time::Instant::now() + duration;
            ctx.opened();
            let mut lanes = tokio::task::JoinSet::new();
            for _ in 0..pipeline {
                let (ctx, client, contacts) =
                    (Arc::clone(&ctx), client.clone(), Arc::clone(&contacts));
                lanes.spawn(async move {
                    while tokio::time::Instant::now() < stop {
                        if let Some(p) = &ctx.pacer {
                            p.wait().await;
                        }
                        let to = &contacts[(OsRng.next_u64() % contacts.len() as u64) as usize];
                        ctx.send_to(&client, to).await;
                    }
                });
            }
            while lanes.join_next().await.is_some() {}
            client.close().await;
            ctx.closed();
        });
    }
    warmed.wait().await;
    if warm_up {
        // Everything the warm-up stored is received before the clock starts.
        let until = Instant::now() + Duration::from_secs(30);
        while ctx.stats.lost() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let started = Instant::now();
    let base = ctx.stats.start_timing(ctx.epoch);
    go.wait().await;
    while tasks.join_next().await.is_some() {}
    (started, base)
}

/// A held connection and its (unread) message stream.
pub(crate) type Held = (
    nano_client::Client,
    tokio::sync::mpsc::Receiver<nano_client::Incoming>,
);

/// Opens `n` connections and waits until each has logged in (its `UpToDate`, after the
/// relay's `auth_ok`); returns those that did (dropping them closes them). A connection that
/// fails is counted as an error: `connect` (HTTP or WebSocket) or `auth` (no login in 30 s).
pub(crate) async fn hold(ctx: &Ctx, n: usize) -> Vec<Held> {
    let mut held = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..n {
        let user = &ctx.users[i % ctx.users.len()];
        let (api, name, id) = (
            ctx.api.clone(),
            user.name.clone(),
            Arc::clone(&user.identity),
        );
        let gate = Arc::clone(&gate);
        tasks.spawn(async move {
            let _p = gate.acquire().await.map_err(|_| "connect")?;
            let u = User::new(name, id);
            // Idle connections: they neither send nor publish prekeys.
            let (c, mut rx) = connect(&api, &u, None).await.map_err(|_| "connect")?;
            // Held only once logged in: `UpToDate` follows the relay's `auth_ok` and the
            // inbox's first page.
            loop {
                match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                    Ok(Some(Incoming::UpToDate)) => return Ok((c, rx)),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Err("auth"),
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(h)) => {
                ctx.opened();
                held.push(h);
            }
            Ok(Err(what)) => ctx.stats.error(what),
            Err(_) => ctx.stats.error("connect"),
        }
    }
    held
}
