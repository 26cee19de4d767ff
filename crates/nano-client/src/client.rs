//! The SDK's front: [`Client::connect`], `register`, `send`, the stream of received messages,
//! `ack` and `read`. The WebSocket itself lives in the connection task (`connection.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nano_crypto::envelope::{SealParams, seal_with};
use nano_crypto::{
    AdaptiveCryptoConfig, CryptoAcceleration, CryptoMode, Fingerprint, Identity, MessageContext,
    OsRng, PublicBundle, negotiate_modes,
};
use nano_proto::rest::RelayInfo;
use nano_proto::{ClientFrame, MessageId, Username};
use rand_core::RngCore;
use tokio::sync::{mpsc, oneshot};

use crate::api::Api;
use crate::connection::{self, Command};
use crate::error::{ClientError, Result};
use crate::sessions::{SessionInfo, Sessions};
use crate::store::{MemoryStore, Store};

pub use crate::config::ClientConfig;
pub use crate::incoming::{Incoming, Received, Unverifiable};

/// The WebSocket settings of a client connection. The read buffer is 8 KiB, not the
/// transport's 128 KiB: the transport zeroes its whole free capacity before each read, and a
/// client reads mostly frames of a few hundred bytes (a larger frame grows the buffer to fit).
/// Messages and frames are bounded at 256 KiB, above the largest frame a relay sends
/// (`message` with a 71,882-byte payload).
pub fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    const MAX: usize = 256 * 1024;
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX))
}

/// How long a contact without prekeys of a mode gets sealed envelopes before the relay is
/// asked again.
pub const NO_PREKEYS_TTL: Duration = Duration::from_secs(30);

/// How long a recipient's bundle is served from the cache.
pub const BUNDLE_TTL: Duration = Duration::from_secs(60);
/// Most bundles cached.
pub const BUNDLE_CACHE: usize = 1024;
/// Longest a send may take, from looking up the recipient's keys to the relay's `sent` answer
/// (reconnects and retries included).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Received messages buffered for the application.
const INCOMING: usize = 1024;

/// Which mode to seal a message with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Chosen by [`AdaptiveCryptoConfig`] from the measured round-trip time and CPU load, among
    /// the modes both parties hold, never below any party's minimum.
    Auto,
    /// This mode, if every party accepts it.
    Explicit(CryptoMode),
}

/// Decides whether a peer's key is acceptable: trust on first use, pinning, or anything else.
pub trait TrustPolicy: Send + Sync + 'static {
    /// Called with the name and current fingerprint of every sender and recipient.
    fn check(&self, name: &str, fingerprint: &Fingerprint) -> Result<()>;
}

/// Accepts every key the relay serves (tests, or callers that check fingerprints themselves).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAll;

impl TrustPolicy for TrustAll {
    fn check(&self, _: &str, _: &Fingerprint) -> Result<()> {
        Ok(())
    }
}

/// Proof a message was durably stored by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message id.
    pub id: MessageId,
    /// The mode it was sealed with.
    pub mode: CryptoMode,
    /// Whether the relay had it already (a resend).
    pub duplicate: bool,
    /// Whether it went on a session (false: a sealed envelope).
    pub session: bool,
}

struct CachedBundle {
    bundle: Arc<PublicBundle>,
    at: Instant,
}

/// What the client and its connection task share.
pub(crate) struct Shared {
    pub(crate) api: Api,
    pub(crate) identity: Arc<Identity>,
    pub(crate) username: Username,
    pub(crate) relay: RelayInfo,
    /// The relay's identity (its fingerprint is the pinned `relay_id`): verifies its
    /// `challenge`.
    pub(crate) relay_bundle: PublicBundle,
    pub(crate) trust: Arc<dyn TrustPolicy>,
    pub(crate) rtt_us: AtomicU64,
    bundles: Mutex<HashMap<String, CachedBundle>>,
    /// The TLS trust for `wss://` (the same as the API's).
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Why the connection task stopped for good, if it did.
    gave_up: Mutex<Option<ClientError>>,
    /// Sessions and prekey secrets, over the application's store.
    pub(crate) sessions: Arc<Sessions>,
    /// The connection task's commands (weak: the task ends when every `Client` is dropped).
    commands: mpsc::WeakSender<Command>,
    /// One prekey top-up at a time.
    pub(crate) publishing: tokio::sync::Mutex<()>,
    /// Contacts the relay said have no prekeys of a mode, and when: they get sealed envelopes
    /// without asking again for [`NO_PREKEYS_TTL`].
    pub(crate) no_prekeys: Mutex<HashMap<(String, CryptoMode), Instant>>,
    /// Contacts a first message is being sent to: one bundle fetch and handshake at a time
    /// per contact (later sends wait and ride the new session).
    pub(crate) initiating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One-time prekeys the relay holds per mode, as it last said.
    pub(crate) prekey_counts: Mutex<Option<nano_proto::PrekeyCounts>>,
    /// [`ClientConfig::publish_prekeys`].
    pub(crate) publish_prekeys: bool,
    /// [`ClientConfig::one_time_prekeys`].
    pub(crate) one_time_prekeys: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("username", &self.username)
            .field("relay", &self.api.base())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A sender of commands to the connection task, while it runs.
    pub(crate) fn commands(&self) -> Option<mpsc::Sender<Command>> {
        self.commands.upgrade()
    }

    /// Records why the connection task stops for good.
    pub(crate) fn give_up(&self, why: ClientError) {
        *self.gave_up.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// The error for a command the stopped connection task can no longer take: why it stopped,
    /// or [`ClientError::Closed`] after [`Client::close`].
    pub(crate) fn closed(&self) -> ClientError {
        self.gave_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(ClientError::Closed)
    }

    /// As [`Shared::bundle`], trying again until `deadline` while the relay is unreachable or
    /// answers a retryable code (it restarts, its database restarts): a send during a short
    /// outage completes late instead of failing.
    pub(crate) async fn bundle_retrying(
        &self,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<PublicBundle>> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.bundle(name).await {
                Err(e) if e.is_retryable() && tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "recipient's keys not reachable yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// `name`'s bundle from the cache while fresh (not yet checked against the trust policy).
    pub(crate) fn cached_bundle(&self, name: &str) -> Option<Arc<PublicBundle>> {
        let c = self.bundles.lock().unwrap_or_else(|p| p.into_inner());
        c.get(name)
            .filter(|b| b.at.elapsed() < BUNDLE_TTL)
            .map(|b| Arc::clone(&b.bundle))
    }

    /// `name`'s bundle, from the cache while fresh, checked against the trust policy.
    pub(crate) async fn bundle(&self, name: &str) -> Result<Arc<PublicBundle>> {
        match self.cached_bundle(name) {
            Some(b) => {
                self.trust.check(name, &b.fingerprint())?;
                Ok(b)
            }
            None => self.trusted(name, self.api.bundle(name).await?),
        }
    }

    /// Caches `bundle` (decoded and its proofs verified) as `name`'s, then checks it against
    /// the trust policy.
    ///
    /// # Errors
    /// The trust policy's ([`ClientError::ContactKeyChanged`] for a key other than the pinned one).
    pub(crate) fn trusted(&self, name: &str, bundle: PublicBundle) -> Result<Arc<PublicBundle>> {
        let b = Arc::new(bundle);
        {
            let mut c = self.bundles.lock().unwrap_or_else(|p| p.into_inner());
            if c.len() >= BUNDLE_CACHE {
                c.retain(|_, v| v.at.elapsed() < BUNDLE_TTL);
                if c.len() >= BUNDLE_CACHE {
                    c.clear();
                }
            }
            c.insert(
                name.to_owned(),
                CachedBundle {
                    bundle: Arc::clone(&b),
                    at: Instant::now(),
                },
            );
        }
        self.trust.check(name, &b.fingerprint())?;
        Ok(b)
    }
}

/// A connected client. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

/// Modes `a` can seal for `b` under every floor, or an error naming `b`.
fn modes_for(
    me: &PublicBundle,
    them: &PublicBundle,
    relay_floor: CryptoMode,
    name: &str,
) -> Result<Vec<CryptoMode>> {
    let modes = negotiate_modes(me, them, &[relay_floor]);
    if modes.is_empty() {
        return Err(ClientError::NoCommonMode(name.to_owned()));
    }
    Ok(modes)
}

/// The AEAD this CPU runs fastest, detected once per process.
pub(crate) fn preferred_aead() -> nano_crypto::AeadId {
    static AEAD: std::sync::OnceLock<nano_crypto::AeadId> = std::sync::OnceLock::new();
    *AEAD.get_or_init(|| CryptoAcceleration::detect().preferred_aead())
}

/// This machine's CPU load in percent (1-minute load average over the core count).
fn cpu_load_percent() -> f32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f32>().ok())
        .map_or(0.0, |l| (l / cores * 100.0).min(100.0))
}

impl Client {
    /// [`Client::connect_with_store`] with a [`MemoryStore`]: sessions last as long as the
    /// process.
    ///
    /// # Errors
    /// As [`Client::connect_with_store`].
    pub async fn connect(
        cfg: ClientConfig,
        identity: Arc<Identity>,
        trust: Arc<dyn TrustPolicy>,
    ) -> Result<(Self, mpsc::Receiver<Incoming>, RelayInfo)> {
        Self::connect_with_store(cfg, identity, trust, Arc::new(MemoryStore::new())).await
    }

    /// Connects: reads `GET /v1/relay`, checks the relay identity against the pin, and starts the
    /// connection task (which authenticates, keeps reconnecting, and keeps the relay supplied
    /// with one-time prekeys). Sessions and prekey secrets live in `store`. Returns the client,
    /// the stream of received messages, and the relay information (whose `relay_id` to pin).
    ///
    /// # Errors
    /// The relay unreachable, its identity not the pinned one, or plain WebSocket off
    /// loopback.
    pub async fn connect_with_store(
        cfg: ClientConfig,
        identity: Arc<Identity>,
        trust: Arc<dyn TrustPolicy>,
        store: Arc<dyn Store>,
    ) -> Result<(Self, mpsc::Receiver<Incoming>, RelayInfo)> {
        let tls = cfg.tls()?;
        let api = Api::with_tls(&cfg.relay_url, &tls)?;
        let username = Username::new(&cfg.username)?;
        let relay = api.relay_info().await?;
        if let Some(pinned) = &cfg.pinned_relay_id
            && *pinned != relay.relay_id
        {
            return Err(ClientError::RelayIdentityChanged {
                pinned: pinned.clone(),
                now: relay.relay_id.clone(),
            });
        }
        let relay_bundle = PublicBundle::from_bytes(relay.identity.as_slice())?;
        if relay_bundle.fingerprint().to_hex() != relay.relay_id {
            return Err(ClientError::Protocol(
                "the relay's identity does not match its id".into(),
            ));
        }
        crate::tls::require_tls_off_loopback(&relay.websocket_url)?;
        let (commands, rx) = mpsc::channel(256);
        let shared = Arc::new(Shared {
            api,
            identity,
            username,
            relay_bundle,
            relay: relay.clone(),
            trust,
            rtt_us: AtomicU64::new(0),
            bundles: Mutex::new(HashMap::new()),
            tls,
            gave_up: Mutex::new(None),
            sessions: Arc::new(Sessions::new(store)),
            commands: commands.downgrade(),
            publishing: tokio::sync::Mutex::new(()),
            initiating: Mutex::new(HashMap::new()),
            no_prekeys: Mutex::new(HashMap::new()),
            prekey_counts: Mutex::new(None),
            publish_prekeys: cfg.publish_prekeys,
            one_time_prekeys: cfg.one_time_prekeys,
        });
        let (in_tx, in_rx) = mpsc::channel(INCOMING);
        tokio::spawn(connection::run(Arc::clone(&shared), rx, in_tx));
        Ok((Self { shared, commands }, in_rx, relay))
    }

    /// Registers `identity` as `username` (`POST /v1/users`), checking the relay against
    /// `pinned_relay_id` when one is pinned; returns the relay information (whose id to pin).
    pub async fn register_only(cfg: &ClientConfig, identity: &Identity) -> Result<RelayInfo> {
        let api = Api::with_tls(&cfg.relay_url, &cfg.tls()?)?;
        let info = api.relay_info().await?;
        if let Some(pinned) = &cfg.pinned_relay_id
            && *pinned != info.relay_id
        {
            return Err(ClientError::RelayIdentityChanged {
                pinned: pinned.to_owned(),
                now: info.relay_id.clone(),
            });
        }
        api.register(
            &Username::new(&cfg.username)?,
            identity,
            info.minimum_crypto_mode,
        )
        .await?;
        Ok(info)
    }

    /// The relay's information as read at connect.
    pub fn relay(&self) -> &RelayInfo {
        &self.shared.relay
    }

    /// The last measured round-trip time to the relay.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(self.shared.rtt_us.load(Ordering::Relaxed))
    }

    /// The mode [`ModeChoice::Auto`] would pick for `recipient` now.
    pub async fn auto_mode(&self, recipient: &str) -> Result<CryptoMode> {
        let them = self.shared.bundle(recipient).await?;
        self.auto_mode_for(recipient, &them)
    }

    /// The adaptive choice among `available` modes for `them`.
    fn auto_mode_for(&self, recipient: &str, them: &PublicBundle) -> Result<CryptoMode> {
        let me = self.shared.identity.public_bundle();
        let available = modes_for(me, them, self.shared.relay.minimum_crypto_mode, recipient)?;
        let ctx = MessageContext {
            latency_ms: u32::try_from(self.rtt().as_millis()).unwrap_or(u32::MAX),
            cpu_usage_percent: cpu_load_percent(),
            ..MessageContext::default()
        };
        let floor = self
            .shared
            .relay
            .minimum_crypto_mode
            .max(me.min_mode())
            .max(them.min_mode());
        // Never below hybrid: the RTT and load behind the rules can be pushed from the network.
        Ok(AdaptiveCryptoConfig::default().select_automatic(&ctx, floor, &available)?)
    }

    /// Sends `plaintext` to `recipient` on a session (PROTOCOL.md §14): the current one of the
    /// chosen mode, or a new one from the recipient's prekey bundle (fetched, verified, its
    /// identity checked by the trust policy), with a sealed envelope when the recipient has
    /// published no prekeys. Returns once the relay has durably stored it (resending across
    /// reconnects with the same bytes, which the relay stores once).
    ///
    /// # Errors
    /// No mode both sides accept, a message too large, an untrusted key, the relay's refusal,
    /// or no answer within [`SEND_TIMEOUT`].
    pub async fn send(
        &self,
        recipient: &str,
        plaintext: &[u8],
        choice: ModeChoice,
    ) -> Result<SendReceipt> {
        self.send_as(recipient, plaintext, choice, false).await
    }

    /// Sends `plaintext` as a stateless sealed envelope (PROTOCOL.md §6), never on a session.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn send_sealed(
        &self,
        recipient: &str,
        plaintext: &[u8],
        choice: ModeChoice,
    ) -> Result<SendReceipt> {
        self.send_as(recipient, plaintext, choice, true).await
    }

    /// Uploads one-time prekeys (and signed prekeys where none are published) until every mode
    /// holds [`ClientConfig::one_time_prekeys`] on the relay; what `register` does, and what every
    /// login does in the background when the relay says a mode runs low.
    ///
    /// # Errors
    /// The relay's refusal, a lost connection, the store's.
    pub async fn publish_prekeys(&self) -> Result<()> {
        crate::prekeys::publish(&self.shared).await
    }

    /// The sessions with `peer`, per mode (for `contacts show`).
    ///
    /// # Errors
    /// The store's.
    pub fn sessions_with(&self, peer: &str) -> Result<Vec<SessionInfo>> {
        self.shared.sessions.info(Username::new(peer)?.as_str())
    }

    async fn send_as(
        &self,
        recipient: &str,
        plaintext: &[u8],
        choice: ModeChoice,
        sealed_only: bool,
    ) -> Result<SendReceipt> {
        // Names are case-insensitive: `Bob` is `bob` everywhere, contacts included.
        let canonical = Username::new(recipient)?;
        let recipient = canonical.as_str();
        // One deadline for the whole send: the key lookup's retries and the wait for `sent`.
        let deadline = tokio::time::Instant::now() + SEND_TIMEOUT;
        // A session message in a mode given up front whose identity bundle is not cached (a
        // first contact, or a bundle past its TTL): if no session is held, one `get_contact`
        // brings the identity bundle with the prekey bundle. With the bundle cached there is
        // no fetch, and no extra session lookup on the steady path.
        let (them, first) = match choice {
            ModeChoice::Explicit(m)
                if !sealed_only && self.shared.cached_bundle(recipient).is_none() =>
            {
                self.first_contact(recipient, m, deadline).await?
            }
            _ => (
                self.shared.bundle_retrying(recipient, deadline).await?,
                Ok(None),
            ),
        };
        let me = self.shared.identity.public_bundle();
        let mode = match choice {
            ModeChoice::Auto => self.auto_mode_for(recipient, &them)?,
            ModeChoice::Explicit(m) => {
                let allowed =
                    modes_for(me, &them, self.shared.relay.minimum_crypto_mode, recipient)?;
                if !allowed.contains(&m) {
                    return Err(ClientError::Invalid(format!(
                        "{recipient} cannot receive {m} messages here (allowed: {})",
                        allowed
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                m
            }
        };
        let largest = nano_proto::max_plaintext_len(mode, self.shared.relay.max_message_bytes);
        if plaintext.len() > largest {
            return Err(ClientError::MessageTooLarge {
                size: plaintext.len(),
                largest,
                mode,
            });
        }
        let session = if sealed_only {
            None
        } else {
            // The mode and size checks above come first: their errors are the clearer ones.
            self.session_payload(recipient, &them, mode, plaintext, deadline, first?)
                .await?
        };
        let on_session = session.is_some();
        let (payload, id) = match session {
            Some(p) => {
                let p = nano_proto::Payload(p);
                let id = p.session_message_id();
                (p, id)
            }
            None => {
                let mut id = [0u8; 16];
                OsRng.fill_bytes(&mut id);
                let params = SealParams {
                    mode,
                    aead: preferred_aead(),
                    message_id: id,
                    timestamp_ms: nano_proto::now_ms(),
                };
                let sealed =
                    seal_with(&self.shared.identity, &them, plaintext, params, &mut OsRng)?;
                (nano_proto::Payload(sealed), MessageId(id))
            }
        };
        // No `id`: the relay reads it from the payload (PROTOCOL.md §12 step 5).
        let frame = ClientFrame::SendMessage {
            recipient: Username::new(recipient)?,
            message: payload,
            crypto_mode: mode,
            id: None,
        };
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send {
                id,
                frame,
                reply: tx,
            })
            .await
            .map_err(|_| self.shared.closed())?;
        let duplicate = tokio::time::timeout_at(deadline, rx)
            .await
            .map_err(|_| ClientError::Timeout("waiting for the relay to store the message"))?
            .map_err(|_| self.shared.closed())??;
        Ok(SendReceipt {
            id,
            mode,
            duplicate,
            session: on_session,
        })
    }

    /// Removes messages from the relay inbox (after the application has them).
    /// The plaintexts kept for them in the store (`ReceivedStore`) are forgotten once the ack
    /// is queued.
    pub async fn ack(&self, ids: &[MessageId]) -> Result<()> {
        self.mark(ids, true).await?;
        let ids = ids.to_vec();
        self.shared
            .sessions
            .run(true, move |s| s.store().remove_received(&ids))
            .await
    }

    /// Marks messages read.
    pub async fn read(&self, ids: &[MessageId]) -> Result<()> {
        self.mark(ids, false).await
    }

    async fn mark(&self, ids: &[MessageId], ack: bool) -> Result<()> {
        for chunk in ids.chunks(nano_proto::MAX_IDS_PER_FRAME) {
            let ids = chunk.to_vec();
            let cmd = if ack {
                Command::Ack(ids)
            } else {
                Command::Read(ids)
            };
            self.commands
                .send(cmd)
                .await
                .map_err(|_| self.shared.closed())?;
        }
        Ok(())
    }

    /// Waits until everything queued so far has been written to the relay (acks included).
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| self.shared.closed())?;
        tokio::time::timeout(SEND_TIMEOUT, rx)
            .await
            .map_err(|_| ClientError::Timeout("flushing to the relay"))?
            .map_err(|_| self.shared.closed())
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}
