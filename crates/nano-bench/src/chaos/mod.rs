//! `nano-bench chaos`: faults under sustained load with real SDK clients, and what they cost:
//! messages lost, shown twice, sends failed, time to recover.
//!
//! ```text
//! mod.rs       arguments, the run (setup → load + faults → drain → checks → report)
//! relay.rs     restartable relay processes (kill -9, same ports and data), the run directory
//! faults.rs    what each scenario breaks and brings back, when, and /ready while it recovers
//! traffic.rs   open-loop senders, checking receivers, the books (lost, duplicates shown)
//! services.rs  the processes of each scenario (one relay, or Redis and two relays)
//! postgres.rs  pg_ctlcluster stop / start, pg_terminate_backend
//! http.rs      a plain GET of the relay's /ready
//! redis.rs     the shared or a private redis-server: shutdown, start, PUBSUB NUMSUB
//! report.rs    summary table, Markdown, JSON
//! ```

mod faults;
mod http;
mod postgres;
mod redis;
mod relay;
mod report;
mod services;
mod traffic;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::ValueEnum;
use nano_crypto::CryptoMode;

use crate::load::setup::{connect, register_users, start_receivers};
use faults::FaultRecord;
use postgres::PgFault;
use report::ChaosReport;
use services::{Env, Services};
use traffic::Tally;

/// Load kept up after the last fault's recovery (seconds).
const TAIL: Duration = Duration::from_secs(2);
/// The drain ends after this long without a new delivery (seconds)...
const DRAIN_QUIET: Duration = Duration::from_secs(15);
/// ... or after this long in all (seconds).
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// What to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// `kill -9` of the relay, restarted on the same ports and data.
    RelayKill,
    /// PostgreSQL restarted (or the relay's server processes terminated).
    PostgresRestart,
    /// Redis restarted under two relays sharing PostgreSQL and Redis.
    RedisRestart,
}

/// Arguments of `nano-bench chaos`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChaosArgs {
    /// What to break.
    #[arg(long, value_enum)]
    pub(crate) scenario: Scenario,
    /// Storage of the spawned relays (postgres://…; required by postgres-restart and
    /// redis-restart); default a temporary SQLite file.
    #[arg(long, value_name = "URL")]
    pub(crate) storage_url: Option<String>,
    /// Registered receiving users (user_1 … user_N), all connected.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Sending clients (identities of their own), sharing the offered rate.
    #[arg(long, default_value_t = 16)]
    senders: usize,
    /// Sends offered per second in all (open loop: an outage does not slow the offer).
    #[arg(long, value_name = "MSG_PER_S", default_value_t = 500.0)]
    rate: f64,
    /// Seconds of load (longer if the faults need it: it lasts until 2 s after the last
    /// recovery).
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    duration: f64,
    /// Faults injected, evenly spread over the load.
    #[arg(long, value_name = "K", default_value_t = 10)]
    faults: usize,
    /// Seconds the relay (relay-kill), PostgreSQL (postgres-restart) or Redis (redis-restart)
    /// stays down before it starts again.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub(crate) outage: f64,
    /// postgres-restart: `restart` the local cluster (pg_ctlcluster stop, then start after
    /// --outage), or `terminate` the relay's server processes; default restart when the server
    /// is local and pg_ctlcluster is available, else terminate.
    #[arg(long, value_enum)]
    pub(crate) pg_fault: Option<PgFault>,
    /// redis-restart: the shared Redis to restart (with `redis-cli shutdown nosave`, then
    /// `redis-server --daemonize yes …`).
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,
    /// redis-restart: spawn a private redis-server on a free port and restart that one.
    #[arg(long)]
    pub(crate) redis_private: bool,
    /// The mode every message is sealed with (and every user's minimum).
    #[arg(long, default_value = "hybrid")]
    crypto_mode: CryptoMode,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

impl Scenario {
    /// Its name on the command line.
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// A one-line progress display on a terminal, until `stop`.
fn progress(tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let (sent, acked, got, flying) = tally.progress();
            eprint!(
                "\r[{:>6.1} s] sent {sent:>8}  acked {acked:>8}  delivered {got:>8}  in flight {flying:>6}   ",
                tally.now_s()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!();
    });
}

/// What a run measured before the report is assembled.
struct Outcome {
    faults: Vec<FaultRecord>,
    load_s: f64,
}

/// Registers users and senders, connects them, runs the load with the faults, drains.
async fn exercise(args: &ChaosArgs, env: &Services, tally: &Arc<Tally>) -> anyhow::Result<Outcome> {
    eprintln!(
        "registering {} users and {} senders …",
        args.users, args.senders
    );
    let mode = args.crypto_mode;
    let users = Arc::new(register_users(&env.send_api, "user", args.users, mode).await?);
    let senders = register_users(&env.send_api, "sender", args.senders, mode).await?;
    let on = traffic::on_incoming(Arc::clone(tally));
    let receivers = start_receivers(&env.recv_api, &users, on).await?.clients;
    let mut clients = Vec::with_capacity(senders.len());
    for s in &senders {
        clients.push(connect(&env.send_api, s, None).await?.0);
    }
    eprintln!(
        "load at {} msg/s, {} faults: {}",
        args.rate,
        args.faults,
        env.injector.describe()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let start = tally.epoch();
    progress(Arc::clone(tally), Arc::clone(&stop));
    let offer = tokio::spawn(traffic::offer(
        Arc::clone(tally),
        clients.clone(),
        users,
        args.rate,
        mode,
        Arc::clone(&stop),
    ));
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let driven = faults::drive(
        Arc::clone(&env.injector),
        args.faults,
        duration,
        start,
        env.send_api.clone(),
    )
    .await;
    tokio::time::sleep_until((start + duration).max(Instant::now() + TAIL).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut sends = offer.await?;
    let load_s = start.elapsed().as_secs_f64();
    let faults = driven?;
    eprintln!("load over after {load_s:.1} s; waiting for the sends in flight and deliveries …");
    while sends.join_next().await.is_some() {}
    traffic::drain(tally, DRAIN_QUIET, DRAIN_LIMIT).await;
    for c in clients.iter().chain(&receivers) {
        c.close().await;
    }
    Ok(Outcome { faults, load_s })
}

/// The failed checks of a run.
fn checks(r: &ChaosReport, expect_down: bool) -> Vec<String> {
    let c = &r.counts;
    let mut f = Vec::new();
    let mut count = |n: u64, what: &str| {
        if n > 0 {
            f.push(format!("{n} {what}"));
        }
    };
    count(c.lost, "acknowledged messages never delivered");
    count(c.duplicates_shown, "messages shown twice");
    count(c.sends_failed, "sends failed");
    count(c.misrouted, "messages handed to the wrong user");
    count(c.rejected, "messages rejected by their receiver");
    count(c.unparsable, "unknown messages delivered");
    if c.messages_acked == 0 {
        f.push("no message was acknowledged".into());
    }
    if r.faults < r.faults_requested {
        f.push(format!(
            "{} of {} faults injected",
            r.faults, r.faults_requested
        ));
    }
    for x in &r.fault_records {
        if x.recovery_s.is_none() {
            f.push(format!("fault {} did not recover", x.n));
        }
        if expect_down && !x.ready_down_seen {
            f.push(format!("/ready never answered 503 during fault {}", x.n));
        }
    }
    f
}

/// Runs the scenario on `env`; returns the report.
async fn run(args: &ChaosArgs, env: &Services) -> anyhow::Result<ChaosReport> {
    let tally = Arc::new(Tally::new());
    let began = Instant::now();
    let Outcome { mut faults, load_s } = exercise(args, env, &tally).await?;
    for f in &mut faults {
        f.delivery_after_s = tally.first_delivery_after(f.at_s);
        f.recovery_s = match args.scenario {
            Scenario::PostgresRestart => f.ready_after_s,
            _ => f.delivery_after_s,
        };
    }
    let counts = tally.counts();
    let recovery_s_max = faults
        .iter()
        .map(|f| f.recovery_s)
        .try_fold(0.0_f64, |m, r| r.map(|r| m.max(r)));
    let mut warnings = Vec::new();
    if counts.sends_not_offered > 0 {
        warnings.push(format!(
            "{} sends not offered: {} were in flight",
            counts.sends_not_offered,
            traffic::MAX_IN_FLIGHT
        ));
    }
    let mut report = ChaosReport {
        scenario: args.scenario.name(),
        storage: postgres::label(args.storage_url.as_deref()),
        fault: env.injector.describe(),
        crypto_mode: args.crypto_mode.as_str().to_owned(),
        users: args.users,
        senders: args.senders,
        faults: faults.len(),
        faults_requested: args.faults,
        offered_rate_msgs_per_s: args.rate,
        offered_msgs_per_s_measured: counts.messages_sent as f64 / load_s.max(0.001),
        load_s,
        duration_s: began.elapsed().as_secs_f64(),
        counts,
        recovery_s_max: if faults.is_empty() {
            None
        } else {
            recovery_s_max
        },
        recovery: match args.scenario {
            Scenario::PostgresRestart => {
                "from the fault until the relay's /ready answers 200 again"
            }
            _ => "from the fault until the first delivery of a message sent after it",
        }
        .into(),
        fault_records: faults,
        failures: Vec::new(),
        warnings,
    };
    report.failures = checks(&report, env.expect_down);
    Ok(report)
}

/// Refuses arguments the run cannot use, before anything starts.
fn validate(args: &ChaosArgs) -> anyhow::Result<()> {
    if args.users == 0 || args.senders == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--users, --senders and --rate must be positive");
    }
    let needs_pg = matches!(
        args.scenario,
        Scenario::PostgresRestart | Scenario::RedisRestart
    );
    if needs_pg
        && !args
            .storage_url
            .as_deref()
            .is_some_and(postgres::is_postgres)
    {
        bail!(
            "--scenario {} needs --storage-url postgres://…",
            args.scenario.name()
        );
    }
    Ok(())
}

/// `nano-bench chaos`: runs, prints the summary, writes the requested files; fails (after
/// writing them) when a check failed, keeping the run directory with the relays' logs.
pub(crate) fn main(args: &ChaosArgs) -> anyhow::Result<()> {
    validate(args)?;
    let env: Env = services::setup(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run(args, &env.services));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            env.run.keep();
            return Err(e.context(format!("relay logs kept in {}", env.run.path().display())));
        }
    };
    println!("{}", report.table());
    crate::output::write_reports(
        &report,
        args.json.as_deref(),
        args.report.as_deref(),
        |command| report.markdown(command),
    )?;
    if !report.failures.is_empty() {
        env.run.keep();
        bail!(
            "{} (relay logs kept in {})",
            report.failures.join("; "),
            env.run.path().display()
        );
    }
    Ok(())
}
