//! `nano-bench load`: the guide's load test with real clients doing real crypto.
//!
//! ```text
//! mod.rs    arguments, the run's shape (setup → load → drain → report), relay sampling
//! setup.rs  spawned relay, registered users user_1…user_N, receiving clients
//! run.rs    the phased scenario, the closed-loop throughput run, held idle connections
//! kex.rs    a key-exchange virtual user (raw frames, real crypto)
//! raw.rs    --presealed: raw senders of pre-encrypted session messages (or replayed sealed
//!           envelopes), raw acking receivers
//! stats.rs  counters, latency, loss
//! report.rs summary table, JSON, Markdown
//! chart.rs  throughput, latency, relay RSS and CPU over time (SVG, PNG)
//! ```

mod chart;
mod kex;
mod raw;
mod relay_metrics;
mod report;
pub(crate) mod run;
pub(crate) mod setup;
mod stats;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nano_crypto::{CryptoMode, PublicBundle};

use relay_metrics::{relay_metric, sample, settled_rss};
use report::{Latency, Report};
use run::Ctx;
use stats::Stats;

/// Sending identities registered beside the recipients.
const SENDERS: usize = 100;
/// Arguments of `nano-bench load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// A running relay's HTTP API (default: spawn one with a temporary SQLite store).
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// Spawn a relay (the default without --relay); needs `nano-relay` built beside nano-bench.
    #[arg(long, conflicts_with = "relay")]
    spawn_relay: bool,
    /// Storage of the spawned relay (e.g. postgres://…); default a temporary SQLite file.
    #[arg(long, value_name = "URL", requires = "spawn_relay")]
    storage_url: Option<String>,
    /// The mode every message is sealed with (and every user's minimum).
    #[arg(long, default_value = "hybrid")]
    crypto_mode: CryptoMode,
    /// Multiply phase durations and the gaps between a user's messages by this (0.1 fits the
    /// guide's 7-minute scenario into 42 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Registered users (user_1 … user_N), all connected as receivers.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Messages each sending virtual user sends.
    #[arg(long, default_value_t = 100)]
    messages_per_user: u32,
    /// Multiply the peak phase's arrival rate by K.
    #[arg(long, default_value_t = 1.0, value_name = "K")]
    spike: f64,
    /// Closed loop instead of the scenario: --connections clients, each keeping --pipeline
    /// sends in flight, for --duration seconds.
    #[arg(long)]
    max_throughput: bool,
    /// Connections of the closed loop.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Sends in flight per connection in the closed loop.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    /// With --max-throughput: encrypt session messages (with --sealed: seal envelopes) before
    /// the timed phase and send them on raw connections to raw acking receivers, so the relay
    /// alone is measured.
    #[arg(long, requires = "max_throughput")]
    presealed: bool,
    /// Send stateless sealed envelopes (PROTOCOL.md §6) instead of session messages.
    #[arg(long)]
    sealed: bool,
    /// With --max-throughput: offer at most this many sends per second in all, evenly spaced
    /// (latency at a given load rather than at saturation).
    #[arg(long, value_name = "MSGS_PER_S", requires = "max_throughput")]
    rate: Option<f64>,
    /// With --max-throughput: first write once to every contact (starting every session),
    /// receive it all, then start the clock; latency and throughput leave the warm-up out.
    #[arg(long, requires = "max_throughput", conflicts_with = "presealed")]
    warm_up: bool,
    /// Seconds of the closed loop.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Open N authenticated idle connections and report relay memory per 1,000.
    #[arg(long, value_name = "N")]
    hold: Option<usize>,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write a chart of throughput, latency and the relay's RSS and CPU over time: SVG for a
    /// `.svg` file, PNG for `.png` (repeat the option for both).
    #[arg(long, value_name = "FILE")]
    chart: Vec<PathBuf>,
}

/// Raises the open-file limit as far as allowed; says so when it stays below `need`.
fn raise_fd_limit(need: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < need => eprintln!(
            "warning: open files limited to {n}, this run needs about {need}; raise it with `ulimit -n`"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

/// A one-line progress display on a terminal.
fn progress_task(
    stats: Arc<Stats>,
    ctx: Arc<Ctx>,
    stop: Arc<AtomicBool>,
    phase: Arc<std::sync::Mutex<String>>,
) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let p = phase.lock().map(|p| p.clone()).unwrap_or_default();
            eprint!(
                "\r[{p:>9}] sent {:>8}  stored {:>8}  received {:>8}  key exchanges {:>6}  connections {:>6}   ",
                stats.sent.load(Ordering::Relaxed),
                stats.acked.load(Ordering::Relaxed),
                stats.received.load(Ordering::Relaxed),
                stats.key_exchanges.load(Ordering::Relaxed),
                ctx.open.load(Ordering::Relaxed),
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!();
    });
}

/// Runs a load test; returns the report.
pub(crate) async fn run(args: &LoadArgs) -> anyhow::Result<Report> {
    raise_fd_limit((args.users as u64 + args.hold.unwrap_or(0) as u64) * 2 + 4096);
    let spawned = match &args.relay {
        Some(_) => None,
        None => Some(setup::spawn_relay(args.storage_url.as_deref())?),
    };
    let api = args
        .relay
        .clone()
        .or_else(|| spawned.as_ref().map(|s| s.api.clone()))
        .context("no relay")?;
    let info = nano_client::api::Api::new(&api)?.relay_info().await?;
    let relay = PublicBundle::from_bytes(info.identity.as_slice())?;
    eprintln!(
        "registering {} users ({} mode) at {api} …",
        args.users, args.crypto_mode
    );
    let users = Arc::new(setup::register_users(&api, "user", args.users, args.crypto_mode).await?);
    // Senders have identities of their own that nobody writes to, so no message is pushed to a
    // sending client too (and opened twice by the load generator).
    let senders = Arc::new(setup::register_users(&api, "sender", SENDERS, args.crypto_mode).await?);
    let stats = Arc::new(Stats::default());
    let epoch = Instant::now();
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        ws_url: info.websocket_url.clone(),
        relay,
        users: Arc::clone(&users),
        senders,
        mode: args.crypto_mode,
        stats: Arc::clone(&stats),
        epoch,
        open: Default::default(),
        pacer: args.rate.map(run::Pacer::new),
        sealed: args.sealed,
    });
    eprintln!("connecting {} receivers …", users.len());
    let inflight: raw::InFlight = Arc::default();
    let receivers = if args.presealed {
        raw::receivers(Arc::clone(&ctx), Arc::clone(&inflight)).await?;
        None
    } else {
        let on = setup::record_into(Arc::clone(&stats), epoch);
        Some(setup::start_receivers(&api, &users, on).await?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(api.clone(), Arc::clone(&stop), epoch));
    let phase = Arc::new(std::sync::Mutex::new(String::from("setup")));
    progress_task(
        Arc::clone(&stats),
        Arc::clone(&ctx),
        Arc::clone(&stop),
        Arc::clone(&phase),
    );
    // Each phase's name and start (seconds since the epoch), for the CPU per phase.
    let marks = std::sync::Mutex::new(Vec::<report::PhaseMark>::new());
    let set_phase = |p: &str| {
        // Without a terminal's progress line, each phase is a line of the log.
        if !std::io::stderr().is_terminal() {
            eprintln!("phase {p} at {:.3} s", epoch.elapsed().as_secs_f64());
        }
        if let Ok(mut g) = phase.lock() {
            *g = p.to_owned();
        }
        if let Ok(mut m) = marks.lock() {
            m.push(report::PhaseMark {
                phase: p.to_owned(),
                start_s: epoch.elapsed().as_secs_f64(),
            });
        }
    };
    let mut started = Instant::now();
    // Messages received before the clock started (a warm-up's), left out of the throughput.
    let mut warmed_up = 0u64;
    let mut per_1000 = None;
    let mut settled = None;
    let mut relay_connections = None;
    let mut offered = Vec::new();
    let scenario = if let Some(n) = args.hold {
        set_phase("hold");
        let before = settled_rss(&api).await;
        let held = run::hold(&ctx, n).await;
        let after = settled_rss(&api).await;
        relay_connections = relay_metric(&api, "nano_messenger_active_connections")
            .await
            .map(|v| v as u64);
        match (before, after) {
            (Some(b), Some(a)) if !held.is_empty() => {
                eprintln!(
                    "relay RSS {:.1} MB before, {:.1} MB with {} idle connections",
                    b / 1e6,
                    a / 1e6,
                    held.len()
                );
                per_1000 = Some((a - b) / 1e6 / held.len() as f64 * 1000.0);
                settled = Some((b / 1e6, a / 1e6));
            }
            _ => eprintln!("could not read the relay's memory before and after"),
        }
        format!("hold {n}")
    } else if args.presealed {
        set_phase("sealing");
        let c = Arc::clone(&ctx);
        let mode = args.crypto_mode;
        // Session messages are each sent once: enough for the run at 60,000 msg/s (or at the
        // offered rate), at most 2,000,000.
        let rate = args.rate.unwrap_or(60_000.0);
        let count = ((rate * args.duration * 1.2) as usize).clamp(1_000, 2_000_000);
        let sealed_only = args.sealed;
        let sealed = Arc::new(
            tokio::task::spawn_blocking(move || {
                if sealed_only {
                    raw::preseal(&c, 512, mode)
                } else {
                    raw::preseal_sessions(&c, count, mode)
                }
            })
            .await??,
        );
        set_phase("closed");
        // The timed phase starts after the sealing.
        started = Instant::now();
        let stop_at = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.connections {
            tasks.spawn(raw::sender(
                Arc::clone(&ctx),
                Arc::clone(&sealed),
                Arc::clone(&inflight),
                args.pipeline,
                stop_at,
            ));
        }
        while let Some(r) = tasks.join_next().await {
            if !matches!(r, Ok(Ok(()))) {
                stats.error("sender");
            }
        }
        format!(
            "presealed max-throughput {}×{}",
            args.connections, args.pipeline
        )
    } else if args.max_throughput {
        set_phase(if args.warm_up { "warm-up" } else { "closed" });
        let (timed, before) = run::max_throughput(
            Arc::clone(&ctx),
            args.connections,
            args.pipeline,
            Duration::from_secs_f64(args.duration),
            args.warm_up,
        )
        .await;
        if args.warm_up {
            // The timed phase began when the warm-up was received, not now.
            if let Ok(mut m) = marks.lock() {
                m.push(report::PhaseMark {
                    phase: "closed".into(),
                    start_s: timed.duration_since(epoch).as_secs_f64(),
                });
            }
            started = timed;
            warmed_up = before;
        }
        format!(
            "max-throughput {}×{}{}",
            args.connections,
            args.pipeline,
            if args.warm_up {
                ", sessions warmed up"
            } else {
                ""
            }
        )
    } else {
        let phases = run::guide_phases(args.spike);
        offered = run::scenario(
            Arc::clone(&ctx),
            &phases,
            args.time_scale,
            args.messages_per_user,
            set_phase,
        )
        .await;
        format!("guide scenario ×{} spike ×{}", args.time_scale, args.spike)
    };
    let load_secs = started.elapsed().as_secs_f64();
    // Throughput counts what arrived within the load phase, not during the drain after it.
    let received_in_load = stats.received.load(Ordering::Relaxed) - warmed_up;
    // Let in-flight deliveries land: until everything stored has arrived, or 10 s of nothing.
    set_phase("delivering");
    let mut quiet = Instant::now();
    let mut last = stats.received.load(Ordering::Relaxed);
    while stats.lost() > 0 && quiet.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();
    if let Some(r) = &receivers {
        for c in &r.clients {
            c.close().await;
        }
        let failed = r.failed_acks.load(Ordering::Relaxed);
        if failed > 0 {
            *stats.errors_mut().entry("ack".into()).or_default() += failed;
        }
    }
    let [p50, p95, p99, max] = stats.latency_ms();
    let received = stats.received.load(Ordering::Relaxed);
    let cpu: Vec<f64> = samples.iter().skip(1).map(|s| s.cpu_percent).collect();
    let relay_acks_applied = relay_metrics::acks_applied(&api, received).await;
    let marks = marks.into_inner().unwrap_or_default();
    Ok(Report {
        scenario,
        crypto_mode: args.crypto_mode.as_str().to_owned(),
        payloads: if args.sealed {
            "sealed envelopes"
        } else {
            "sessions"
        }
        .to_owned(),
        messages_sent: stats.sent.load(Ordering::Relaxed),
        messages_acked: stats.acked.load(Ordering::Relaxed),
        messages_received: received,
        opened: !args.presealed,
        duplicates: stats.duplicates.load(Ordering::Relaxed),
        redelivered: stats.redelivered.load(Ordering::Relaxed),
        lost: stats.lost(),
        key_exchanges: stats.key_exchanges.load(Ordering::Relaxed),
        receiver_reconnects: stats.reconnects.load(Ordering::Relaxed),
        errors: stats.errors(),
        throughput_msgs_per_s: received_in_load as f64 / load_secs.max(0.001),
        latency_ms: Latency { p50, p95, p99, max },
        relay_rss_mb_max: samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
        relay_cpu_percent_mean: if cpu.is_empty() {
            0.0
        } else {
            cpu.iter().sum::<f64>() / cpu.len() as f64
        },
        relay_cpu_percent_by_phase: report::cpu_by_phase(&samples, &marks),
        offered,
        relay_active_connections: relay_connections,
        relay_acks_applied,
        connections_max: samples.iter().map(|s| s.connections).max().unwrap_or(0),
        duration_s: load_secs,
        rss_mb_per_1000_connections: per_1000,
        relay_rss_mb_before: settled.map(|(b, _)| b),
        relay_rss_mb_settled: settled.map(|(_, a)| a),
        relay_samples: samples,
        phases: marks,
        timeline: stats.timeline(),
    })
}

/// `nano-bench load`: runs, prints the summary, writes the requested files.
pub(crate) fn main(args: &LoadArgs) -> anyhow::Result<()> {
    // A chart's format is checked before the run, not after it.
    for p in &args.chart {
        chart::Format::of(p)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run(args))?;
    println!("{}", report.table());
    crate::output::write_reports(
        &report,
        args.json.as_deref(),
        args.report.as_deref(),
        |command| report.markdown(command),
    )?;
    for p in &args.chart {
        chart::write(&report, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
