//! Preparing a load run: the relay (spawned with a temporary store, or given), the registered
//! users `user_1` … `user_N`, and one connected receiving client per user that records every
//! arrival.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nano_client::{Client, ClientConfig, Incoming, TrustAll};
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
fn relay_binary() -> anyhow::Result<PathBuf> {
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
    let config = format!(
        r#"[server]
api_port = 0
websocket_port = 0
max_connections = 50000
[performance]
message_batch_size = 256
message_batch_timeout_ms = 2
[storage]
url = "{url}"
data_dir = "{data}"
[security]
allow_anonymous_send = true
rate_limit_per_connection = 100000
rate_limit_per_address = 10000000
rate_limit_burst = 100000
[limits]
send_queue_depth = 4096
idle_timeout_seconds = 3600
inbox_quota = 1000000
"#,
        data = dir.0.join("data").display()
    );
    let cfg = dir.0.join("relay.toml");
    std::fs::write(&cfg, config)?;
    let log = std::fs::File::create(dir.0.join("relay.log"))?;
    let mut child = Command::new(relay_binary()?);
    // The relay lets these override its file: a run on a temporary store must not inherit them.
    for k in [
        "NANO_STORAGE_URL",
        "NANO_L2_CACHE_URL",
        "NANO_L2_KEY_PREFIX",
        "NANO_TLS_KEY_PATH",
    ] {
        child.env_remove(k);
    }
    let mut child = child
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start nano-relay")?;
    let stdout = child.stdout.take().context("no relay stdout")?;
    let line = std::thread::spawn(move || {
        let mut l = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut l);
        l
    })
    .join()
    .map_err(|_| anyhow::anyhow!("relay output reader failed"))?;
    let api = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .map(str::to_owned)
        .with_context(|| {
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

fn rand_suffix() -> u64 {
    use rand_core::RngCore;
    OsRng.next_u64()
}

/// A registered user.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) identity: Arc<Identity>,
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
            Ok::<_, anyhow::Error>(User {
                name,
                identity: Arc::new(id),
            })
        }));
    }
    let mut users = Vec::with_capacity(n);
    for t in tasks {
        users.push(t.await??);
    }
    Ok(users)
}

/// Connects `user` as a client.
pub(crate) async fn connect(
    api: &str,
    user: &User,
) -> anyhow::Result<(Client, tokio::sync::mpsc::Receiver<Incoming>)> {
    let (c, rx, _) = Client::connect(
        ClientConfig::new(api, &user.name),
        Arc::clone(&user.identity),
        Arc::new(TrustAll),
    )
    .await?;
    Ok((c, rx))
}

/// Connects every user as a receiver that acks and records each message's end-to-end latency
/// (the plaintext carries the send instant). Returns when all are connected and up to date.
pub(crate) async fn start_receivers(
    api: &str,
    users: &[User],
    epoch: Instant,
    stats: Arc<Stats>,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(users.len());
    let mut ready = Vec::with_capacity(users.len());
    for u in users {
        let (client, mut rx) = connect(api, u).await?;
        let c2 = client.clone();
        let stats = Arc::clone(&stats);
        let (tx, up) = tokio::sync::oneshot::channel();
        ready.push(up);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Some(item) = rx.recv().await {
                match item {
                    Incoming::Message(m) => {
                        stats.received(&m.plaintext, epoch);
                        let _ = c2.ack(&[m.id]).await;
                    }
                    Incoming::Rejected { .. } => stats.rejected(),
                    Incoming::UpToDate => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                }
            }
        });
        clients.push(client);
    }
    for r in ready {
        let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
    }
    Ok(clients)
}
