//! `nano-relay`: run a relay, write a configuration template, or check one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use nano_relay::{Environment, RelayConfig};

/// jemalloc with background purging: memory freed after a burst (handshakes, HTTP connections,
/// full queues) goes back to the system within seconds; the system allocator keeps it in the
/// process for good (docs/BENCHMARKS.md §6, idle connections).
#[cfg(unix)]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Nano-Messenger relay: durable store-and-forward of end-to-end encrypted messages.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// relay.toml to run with; without it, development defaults on loopback (HTTP API on 8080,
    /// plain ws:// on 8443, SQLite under ./data).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Print (or write) a commented configuration template.
    InitConfig {
        /// Which template.
        #[arg(long, short, value_enum, default_value = "development")]
        environment: Env,
        /// Write here instead of standard output (refuses to overwrite).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check a configuration file (and the environment overrides) without starting.
    ValidateConfig {
        /// Check the text only, not this machine (TLS files, data directory, descriptor
        /// limits): for a configuration meant for another machine.
        #[arg(long)]
        syntax_only: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Env {
    Development,
    Production,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::InitConfig {
            environment,
            output,
        } => init_config(environment, output),
        Command::ValidateConfig { syntax_only } => validate(cli.config, syntax_only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nano-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn init_config(env: Env, output: Option<PathBuf>) -> anyhow::Result<()> {
    let text = nano_relay::config::template(match env {
        Env::Development => Environment::Development,
        Env::Production => Environment::Production,
    });
    match output {
        None => print!("{text}"),
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn validate(path: Option<PathBuf>, syntax_only: bool) -> anyhow::Result<()> {
    let path = path.context("validate-config needs --config FILE")?;
    let cfg = RelayConfig::load(Some(&path), env_var)
        .with_context(|| format!("{} is not valid", path.display()))?;
    if !syntax_only {
        nano_relay::config::machine::check(&cfg)
            .with_context(|| format!("{} cannot work on this machine", path.display()))?;
    }
    println!(
        "{}: valid (storage {}, api port {}, websocket port {}, tls {})",
        path.display(),
        cfg.storage.url.expose().split("://").next().unwrap_or("?"),
        cfg.server.api_port,
        cfg.server.websocket_port,
        if cfg.tls.enabled { "on" } else { "off" },
    );
    Ok(())
}

fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = RelayConfig::load(path.as_deref(), env_var).context("invalid configuration")?;
    nano_relay::config::machine::check(&cfg).context("invalid configuration")?;
    if path.is_none() {
        tracing::info!(
            "no --config given: development defaults on loopback (HTTP API on {}, plain ws:// on \
             {}, SQLite at {}); see `nano-relay init-config`",
            cfg.server.api_port,
            cfg.server.websocket_port,
            cfg.storage.url.redacted()
        );
    }
    let s = &cfg.server;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all()
        // Blocking tasks are storage calls, which queue on the pool's connections anyway; more
        // threads than connections would only add stacks and allocator arenas.
        .max_blocking_threads(cfg.storage.pool_size as usize + 4)
        .thread_name(s.thread_name.clone())
        .thread_stack_size(s.thread_stack_size)
        .thread_keep_alive(Duration::from_secs(s.keep_alive_seconds));
    if s.worker_threads > 0 {
        rt.worker_threads(s.worker_threads);
    }
    let rt = rt.build().context("cannot start the runtime")?;
    let api_scheme = if cfg.tls.enabled { "https" } else { "http" };
    let result = rt.block_on(async move {
        let relay = nano_relay::start(cfg)
            .await
            .context("cannot start the relay")?;
        // One line on stdout for scripts and tests: where the relay listens.
        println!(
            "nano-relay listening api={api_scheme}://{} websocket={}",
            relay.api_addr,
            relay.ws_url()
        );
        wait_for_signal().await?;
        relay.shutdown().await;
        Ok(())
    });
    // Whatever a stalled peer or a hung database call still holds is dropped, not waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
