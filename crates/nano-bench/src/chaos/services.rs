//! What each scenario runs: one relay (relay-kill, postgres-restart), or Redis and two relays
//! sharing PostgreSQL and Redis (redis-restart); and the fault it injects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::chaos::faults::Injector;
use crate::chaos::postgres::{self, PgFault};
use crate::chaos::redis::Redis;
use crate::chaos::relay::{Relay, RunDir};
use crate::chaos::{ChaosArgs, Scenario};

/// How long two relays have to subscribe to Redis (seconds).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(20);

/// The processes of a run and its fault. Dropping it stops the relays, then deletes the run's
/// Redis keys, then stops a private Redis.
#[derive(Debug)]
pub(crate) struct Services {
    relays: Vec<Arc<Mutex<Relay>>>,
    /// The fault (it holds the relay or Redis it restarts).
    pub(crate) injector: Arc<Injector>,
    redis: Option<Arc<Mutex<Redis>>>,
    /// The Redis key prefix of this run (redis-restart).
    prefix: Option<String>,
    /// Where senders connect.
    pub(crate) send_api: String,
    /// Where receivers connect (the senders' relay unless redis-restart).
    pub(crate) recv_api: String,
    /// Whether `/ready` must be seen down during each fault.
    pub(crate) expect_down: bool,
}

/// [`Services`] and the directory holding their files (deleted last, unless kept).
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) services: Services,
    pub(crate) run: RunDir,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.relays.clear();
        if let (Some(r), Some(p)) = (&self.redis, &self.prefix) {
            lock(r).cleanup(p);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shared<T>(v: T) -> Arc<Mutex<T>> {
    Arc::new(Mutex::new(v))
}

fn api_of(r: &Arc<Mutex<Relay>>) -> String {
    lock(r).api.clone()
}

/// The PostgreSQL URL a scenario needs.
fn pg_url(args: &ChaosArgs) -> anyhow::Result<String> {
    match &args.storage_url {
        Some(u) if postgres::is_postgres(u) => Ok(u.clone()),
        _ => bail!(
            "--scenario {} needs --storage-url postgres://…",
            args.scenario.name()
        ),
    }
}

/// Starts what the scenario needs (blocking). On failure the run directory (relay logs) is
/// kept and named in the error.
pub(crate) fn setup(args: &ChaosArgs) -> anyhow::Result<Env> {
    let run = RunDir::create()?;
    match start(args, &run) {
        Ok(services) => Ok(Env { services, run }),
        Err(e) => {
            run.keep();
            Err(e.context(format!("files kept in {}", run.path().display())))
        }
    }
}

fn start(args: &ChaosArgs, run: &RunDir) -> anyhow::Result<Services> {
    let outage = Duration::from_secs_f64(args.outage.max(0.0));
    match args.scenario {
        Scenario::RelayKill => {
            let storage = args.storage_url.as_deref();
            let a = shared(Relay::start(run, "relay", storage, "", None)?);
            let injector = Injector::RelayKill {
                relay: Arc::clone(&a),
                outage,
            };
            Ok(Services::single(a, injector, true))
        }
        Scenario::PostgresRestart => {
            let url = pg_url(args)?;
            let (kind, version) = postgres::choose(args.pg_fault, &url)?;
            let a = shared(Relay::start(run, "relay", Some(&url), "", None)?);
            let injector = match kind {
                PgFault::Restart => Injector::PgRestart { version, outage },
                PgFault::Terminate => Injector::PgTerminate { url },
            };
            Ok(Services::single(a, injector, kind == PgFault::Restart))
        }
        Scenario::RedisRestart => two_relays(args, run, outage),
    }
}

impl Services {
    fn single(relay: Arc<Mutex<Relay>>, injector: Injector, expect_down: bool) -> Self {
        let api = api_of(&relay);
        Self {
            relays: vec![relay],
            injector: Arc::new(injector),
            redis: None,
            prefix: None,
            send_api: api.clone(),
            recv_api: api,
            expect_down,
        }
    }
}

/// Waits (blocking) until `n` clients subscribe to `channel`, up to 20 s.
fn wait_subscribed(redis: &Redis, channel: &str, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    while redis.subscribers(channel)? < n {
        if Instant::now() >= deadline {
            bail!("{n} relays did not subscribe to {channel} within {SUBSCRIBE_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// redis-restart: Redis (private or shared), then relays A and B on the same PostgreSQL
/// database, Redis and key prefix, B serving A's identity; waits until both subscribe.
fn two_relays(args: &ChaosArgs, run: &RunDir, outage: Duration) -> anyhow::Result<Services> {
    let url = pg_url(args)?;
    let redis = if args.redis_private {
        Redis::private(run.path().join("redis"))?
    } else {
        Redis::shared(&args.redis_url)?
    };
    let prefix = format!("chaos{:x}:", crate::load::setup::rand_suffix());
    let extra = format!(
        "[caching]\nenable_l2_cache = true\nl2_cache_url = \"{}\"\nl2_key_prefix = \"{prefix}\"\nl2_cache_ttl_seconds = 120\n",
        redis.url()
    );
    let a = Relay::start(run, "relay-a", Some(&url), &extra, None)?;
    let b = Relay::start(run, "relay-b", Some(&url), &extra, Some(&a))?;
    wait_subscribed(&redis, &format!("{prefix}deliver"), 2)?;
    let redis = shared(redis);
    let (a, b) = (shared(a), shared(b));
    Ok(Services {
        send_api: api_of(&a),
        recv_api: api_of(&b),
        injector: Arc::new(Injector::RedisRestart {
            redis: Arc::clone(&redis),
            outage,
        }),
        redis: Some(redis),
        relays: vec![a, b],
        prefix: Some(prefix),
        expect_down: false,
    })
}
