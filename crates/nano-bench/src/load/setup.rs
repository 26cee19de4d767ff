//! Preparing a load run: the relay (spawned with a temporary store, or given), the registered
//! users `user_1` … `user_N`, and one connected receiving client per user that records every
//! arrival.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nano_client::{Client, ClientConfig, Incoming, Received, TrustAll};
use nano_crypto::{CryptoMode, Identity, OsRng};
use tokio::sync::Semaphore;

use crate::load::stats::Stats;

/// A relay started by the bench, killed when dropped.
#[derive(Debug)]
pub(crate) struct SpawnedRelay {
    child: Child,
    _dir: tempdir::Dir,
    /// Its HTTP API.
    pub(crate) api: String,
}

mod tempdir {
    /// A directory removed on drop.
    #[derive(Debug)]
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `nano-relay` binary next to this one (`cargo build --release -p nano-relay`).
pub(crate) fn relay_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate nano-bench")?;
    let bin = me.with_file_name("nano-relay");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p nano-relay` (same profile as nano-bench)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A `Command` for the relay binary with the environment overrides it reads removed: a run on
/// a generated configuration must not inherit them.
pub(crate) fn relay_command() -> anyhow::Result<Command> {
    let mut child = Command::new(relay_binary()?);
    for k in [
        "NANO_STORAGE_URL",
        "NANO_L2_CACHE_URL",
        "NANO_L2_KEY_PREFIX",
        "NANO_TLS_KEY_PATH",
    ] {
        child.env_remove(k);
    }
    Ok(child)
}

/// File descriptors the relay keeps beside its WebSocket connections: API connections (1,024
/// by default) and its own files, with room to spare.
const RELAY_FD_RESERVE: u64 = 2048;

/// `max_connections` for a bench relay: 50,000, or fewer when the open-file hard limit (which
/// the relay inherits, and checks its limits against at start) cannot hold that many.
fn max_connections() -> u64 {
    let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(_, hard)| hard);
    hard.saturating_sub(RELAY_FD_RESERVE).clamp(64, 50_000)
}

/// The bench relay's `relay.toml`: storage `url`, identity under `data_dir`, the given ports
/// (0 = any free one), limits high enough for load, and `extra` (more TOML sections) appended.
pub(crate) fn relay_toml(url: &str, data_dir: &Path, ports: (u16, u16), extra: &str) -> String {
    format!(
        r#"[server]
api_port = {api}
websocket_port = {ws}
max_connections = {max}
[performance]
message_batch_size = 256
message_batch_timeout_ms = 2
[storage]
url = "{url}"
data_dir = "{data}"
[security]
allow_anonymous_send = true
allow_opaque_payloads = true
rate_limit_per_connection = 100000
rate_limit_per_address = 10000000
rate_limit_burst = 100000
[limits]
send_queue_depth = 4096
idle_timeout_seconds = 3600
inbox_quota = 1000000
{extra}"#,
        api = ports.0,
        ws = ports.1,
        max = max_connections(),
        data = data_dir.display()
    )
}

/// Reads the relay's first line (`nano-relay listening api=… websocket=…`) within `wait`,
/// then keeps draining its standard output so it never blocks; returns (API URL, WebSocket
/// URL), or `None` if it exited or said something else.
pub(crate) fn read_listening(child: &mut Child, wait: Duration) -> Option<(String, String)> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut l = String::new();
        let _ = std::io::BufRead::read_line(&mut r, &mut l);
        let _ = tx.send(l);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx.recv_timeout(wait).ok()?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_owned)
    };
    Some((field("api=")?, field("websocket=")?))
}

/// Starts a relay on loopback with a temporary SQLite store (or `storage_url`).
pub(crate) fn spawn_relay(storage_url: Option<&str>) -> anyhow::Result<SpawnedRelay> {
    let dir = std::env::temp_dir().join(format!(
        "nano-bench-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir)?;
    let dir = tempdir::Dir(dir);
    let url = storage_url.map_or_else(
        || format!("sqlite://{}/relay.db", dir.0.display()),
        str::to_owned,
    );
    let cfg = dir.0.join("relay.toml");
    std::fs::write(&cfg, relay_toml(&url, &dir.0.join("data"), (0, 0), ""))?;
    let log = std::fs::File::create(dir.0.join("relay.log"))?;
    let mut child = relay_command()?
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start nano-relay")?;
    let (api, _) = read_listening(&mut child, Duration::from_secs(60)).with_context(|| {
        format!(
            "relay did not start (see {})",
            dir.0.join("relay.log").display()
        )
    })?;
    Ok(SpawnedRelay {
        child,
        _dir: dir,
        api,
    })
}

/// A random number for unique names.
pub(crate) fn rand_suffix() -> u64 {
    use rand_core::RngCore;
    OsRng.next_u64()
}

/// A registered user.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) identity: Arc<Identity>,
    /// The user's sessions and prekey secrets, shared by every client the user connects (a
    /// sender and a receiver are one device).
    pub(crate) store: Arc<nano_client::store::MemoryStore>,
}

impl User {
    /// A user with an empty store.
    pub(crate) fn new(name: String, identity: Arc<Identity>) -> Self {
        Self {
            name,
            identity,
            store: Arc::default(),
        }
    }
}

/// Generates and registers `n` users `{prefix}_1` … `{prefix}_n` whose minimum mode is `mode`.
pub(crate) async fn register_users(
    api: &str,
    prefix: &str,
    n: usize,
    mode: CryptoMode,
) -> anyhow::Result<Vec<User>> {
    let ids: Vec<Identity> = tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| Identity::generate(mode, &mut OsRng))
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::with_capacity(n);
    for (i, id) in ids.into_iter().enumerate() {
        let name = format!("{prefix}_{}", i + 1);
        let api = api.to_owned();
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await?;
            Client::register_only(&ClientConfig::new(&api, &name), &id).await?;
            Ok::<_, anyhow::Error>(User::new(name, Arc::new(id)))
        }));
    }
    let mut users = Vec::with_capacity(n);
    for t in tasks {
        users.push(t.await??);
    }
    Ok(users)
}

/// An error's label in the report: `what`, and for a client error its kind (`unreachable`,
/// `timeout`, or the relay's wire code), never its message.
pub(crate) fn error_kind(what: &str, e: &anyhow::Error) -> String {
    use nano_client::ClientError as E;
    let kind = match e.downcast_ref::<E>() {
        Some(E::Relay { code, .. }) => code.as_str().to_owned(),
        Some(E::Unreachable { .. }) => "unreachable".into(),
        Some(E::Timeout(_)) => "timeout".into(),
        Some(E::Tls { .. }) => "tls".into(),
        Some(_) => "client".into(),
        None => "other".into(),
    };
    format!("{what}_{kind}")
}

/// One-time prekeys each receiving user keeps on the relay: enough for the first handshakes
/// of a run's senders (later ones use the last-resort prekey, as on a real relay), and few
/// enough that connecting 1,000 receivers does not take minutes of key generation.
pub(crate) const RECEIVER_ONE_TIME_PREKEYS: u64 = 8;

/// Connects `user` as a client that keeps `one_time_prekeys` on the relay (`None`: publishes
/// no prekeys at all, for connections that only send or only wait).
pub(crate) async fn connect(
    api: &str,
    user: &User,
    one_time_prekeys: Option<u64>,
) -> anyhow::Result<(Client, tokio::sync::mpsc::Receiver<Incoming>)> {
    let cfg = ClientConfig {
        publish_prekeys: one_time_prekeys.is_some(),
        one_time_prekeys: one_time_prekeys.unwrap_or(0),
        ..ClientConfig::new(api, &user.name)
    };
    let (c, rx, _) = Client::connect_with_store(
        cfg,
        Arc::clone(&user.identity),
        Arc::new(TrustAll),
        Arc::clone(&user.store) as Arc<dyn nano_client::store::Store>,
    )
    .await?;
    Ok((c, rx))
}

/// What a receiver does with each item of its stream: `(index of the user, item)`.
pub(crate) type OnIncoming = Arc<dyn Fn(usize, &Incoming) + Send + Sync>;

/// Receiving clients and the acks of theirs that failed (counted as errors by the caller).
pub(crate) struct Receivers {
    pub(crate) clients: Vec<Client>,
    pub(crate) failed_acks: Arc<AtomicU64>,
}

/// Connects every user as a receiver that hands each item to `on` and acks each message.
/// Returns when all are connected and up to date; fails if one is not within 30 s.
pub(crate) async fn start_receivers(
    api: &str,
    users: &[User],
    on: OnIncoming,
) -> anyhow::Result<Receivers> {
    let mut clients = Vec::with_capacity(users.len());
    let mut ready = Vec::with_capacity(users.len());
    let failed_acks = Arc::new(AtomicU64::new(0));
    for (who, u) in users.iter().enumerate() {
        let (client, mut rx) = connect(api, u, Some(RECEIVER_ONE_TIME_PREKEYS)).await?;
        // Prekeys on the relay before any message is sent: a first message finds a bundle.
        client.publish_prekeys().await?;
        let c2 = client.clone();
        let on = Arc::clone(&on);
        let failed = Arc::clone(&failed_acks);
        let (tx, up) = tokio::sync::oneshot::channel();
        ready.push((who, up));
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Some(item) = rx.recv().await {
                on(who, &item);
                match item {
                    Incoming::Message(Received { id, .. })
                    | Incoming::Unverifiable { id, .. }
                    | Incoming::SessionReset { id, .. } => {
                        if c2.ack(&[id]).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Incoming::UpToDate => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Incoming::Rejected { .. } | Incoming::Redelivered { .. } => {}
                }
            }
        });
        clients.push(client);
    }
    for (who, r) in ready {
        match tokio::time::timeout(Duration::from_secs(30), r).await {
            Ok(Ok(())) => {}
            _ => bail!(
                "receiver {} was not up to date within 30 s",
                users[who].name
            ),
        }
    }
    Ok(Receivers {
        clients,
        failed_acks,
    })
}

/// The load test's receivers: each message's end-to-end latency (the plaintext carries the
/// send instant) and each rejection go to `stats`.
pub(crate) fn record_into(stats: Arc<Stats>, epoch: Instant) -> OnIncoming {
    Arc::new(move |_, item| match item {
        Incoming::Message(m) => stats.received(&m.plaintext, epoch),
        Incoming::Rejected { .. } | Incoming::Unverifiable { .. } => stats.rejected(),
        // Nobody in a load test loses a session: a reset is a fault.
        Incoming::SessionReset { .. } => stats.error("session_reset"),
        Incoming::Redelivered { .. } => {
            stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        Incoming::UpToDate => {}
    })
}
