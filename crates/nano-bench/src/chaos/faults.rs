//! Injecting the faults: what each scenario breaks and brings back, when (evenly spread over
//! the load, never sooner than 1 s after the previous recovery), and how long recovery took as
//! seen from the relay's `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::chaos::redis::Redis;
use crate::chaos::relay::Relay;
use crate::chaos::{http, postgres};

/// Least time between one fault's recovery (`/ready` 200) and the next fault (seconds).
const MIN_GAP: Duration = Duration::from_secs(1);
/// How often `/ready` is polled during a fault (milliseconds).
const POLL: Duration = Duration::from_millis(50);
/// Bound of one `/ready` request (the relay bounds its probe at 900 ms).
const READY_TIMEOUT: Duration = Duration::from_secs(4);
/// How long after the service is back `/ready` may take to answer 200 before the fault counts
/// as unrecovered (seconds).
const READY_WAIT: Duration = Duration::from_secs(60);

/// What a scenario breaks, and how it brings it back.
#[derive(Debug)]
pub(crate) enum Injector {
    /// `kill -9` of the relay; after `outage`, the relay starts again on the same ports.
    RelayKill {
        relay: Arc<Mutex<Relay>>,
        outage: Duration,
    },
    /// `pg_ctlcluster --skip-systemctl-redirect <version> main stop`; after `outage`, `start`.
    PgRestart { version: String, outage: Duration },
    /// `pg_terminate_backend` of every server process of the relay's database.
    PgTerminate { url: String },
    /// `redis-cli shutdown nosave`; after `outage`, Redis starts again.
    RedisRestart {
        redis: Arc<Mutex<Redis>>,
        outage: Duration,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Injector {
    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::RelayKill { outage, .. } => {
                format!(
                    "kill -9 of the relay, restarted {:.1} s later on the same ports",
                    outage.as_secs_f64()
                )
            }
            Self::PgRestart { version, outage } => format!(
                "pg_ctlcluster --skip-systemctl-redirect {version} main stop, started again {:.1} s later",
                outage.as_secs_f64()
            ),
            Self::PgTerminate { .. } => {
                "pg_terminate_backend of every server process of the relay's database".into()
            }
            Self::RedisRestart { redis, outage } => format!(
                "{}, started again {:.1} s later",
                lock(redis).describe(),
                outage.as_secs_f64()
            ),
        }
    }

    /// Breaks the service and brings it back (blocking); a detail for the log.
    fn inject(&self) -> anyhow::Result<String> {
        match self {
            Self::RelayKill { relay, outage } => {
                lock(relay).kill9();
                std::thread::sleep(*outage);
                lock(relay).restart()?;
                Ok(String::new())
            }
            Self::PgRestart { version, outage } => {
                postgres::cluster(version, "stop")?;
                std::thread::sleep(*outage);
                postgres::cluster(version, "start")?;
                Ok(String::new())
            }
            Self::PgTerminate { url } => {
                let n = postgres::terminate_backends(url)?;
                Ok(format!("{n} server processes terminated"))
            }
            Self::RedisRestart { redis, outage } => {
                lock(redis).stop()?;
                std::thread::sleep(*outage);
                lock(redis).start()?;
                Ok(String::new())
            }
        }
    }
}

/// One injected fault. Times are seconds; `at_s` counts from the start of the load.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultRecord {
    /// 1, 2, …
    pub(crate) n: usize,
    /// When the fault began.
    pub(crate) at_s: f64,
    /// From the fault until the service was started again (the restart command returned).
    pub(crate) back_after_s: f64,
    /// From the fault until the relay's `/ready` answered 200 again; `None`: not within 60 s
    /// of the service's return.
    pub(crate) ready_after_s: Option<f64>,
    /// Whether `/ready` answered anything but 200 (or nothing at all) in between.
    pub(crate) ready_down_seen: bool,
    /// From the fault until the first delivery of a message whose send started at or after
    /// it; `None`: no such message was delivered.
    pub(crate) delivery_after_s: Option<f64>,
    /// The scenario's recovery time: `ready_after_s` for postgres-restart, `delivery_after_s`
    /// otherwise.
    pub(crate) recovery_s: Option<f64>,
    /// What the injection reported (e.g. how many server processes were terminated).
    pub(crate) detail: String,
}

/// Polls `{api}/ready` until it answers 200 after having been down, or after `back` is set;
/// returns (when it did, whether it was seen down). Gives up 60 s after `back`.
async fn watch_ready(api: String, back: Arc<AtomicBool>) -> (Option<Instant>, bool) {
    let (mut down, mut back_at) = (false, None::<Instant>);
    loop {
        let ok = matches!(
            http::get(&api, "/ready", READY_TIMEOUT).await,
            Some((200, _))
        );
        let is_back = back.load(Ordering::Relaxed);
        if is_back && back_at.is_none() {
            back_at = Some(Instant::now());
        }
        if ok && (down || is_back) {
            return (Some(Instant::now()), down);
        }
        down |= !ok;
        if back_at.is_some_and(|t| t.elapsed() > READY_WAIT) {
            return (None, down);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Injects fault `n` now, brings the service back and waits for `/ready`.
async fn one(
    inj: &Arc<Injector>,
    n: usize,
    ready_api: &str,
    start: Instant,
) -> anyhow::Result<FaultRecord> {
    let at = Instant::now();
    let back = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_ready(ready_api.to_owned(), Arc::clone(&back)));
    let i = Arc::clone(inj);
    let detail = tokio::task::spawn_blocking(move || i.inject()).await??;
    let back_after_s = at.elapsed().as_secs_f64();
    back.store(true, Ordering::Relaxed);
    let (ready, down) = watcher.await?;
    Ok(FaultRecord {
        n,
        at_s: at.duration_since(start).as_secs_f64(),
        back_after_s,
        ready_after_s: ready.map(|r| r.duration_since(at).as_secs_f64()),
        ready_down_seen: down,
        delivery_after_s: None,
        recovery_s: None,
        detail,
    })
}

/// Injects `count` faults during `duration` from `start`, evenly spread (the k-th at
/// k·duration/(count+1)), each no sooner than 1 s after the previous one's `/ready` 200.
/// `ready_api` is the relay whose `/ready` is watched. Returns one record per fault.
pub(crate) async fn drive(
    inj: Arc<Injector>,
    count: usize,
    duration: Duration,
    start: Instant,
    ready_api: String,
) -> anyhow::Result<Vec<FaultRecord>> {
    let spacing = duration.div_f64(count as f64 + 1.0);
    let mut records = Vec::with_capacity(count);
    let mut not_before = start;
    for n in 1..=count {
        let due = (start + spacing.mul_f64(n as f64)).max(not_before);
        tokio::time::sleep_until(due.into()).await;
        let r = one(&inj, n, &ready_api, start).await?;
        eprintln!(
            "fault {n}/{count} at {:.1} s: back after {:.2} s, /ready 200 after {} (down seen: {}) {}",
            r.at_s,
            r.back_after_s,
            r.ready_after_s
                .map_or_else(|| "never".into(), |s| format!("{s:.2} s")),
            r.ready_down_seen,
            r.detail
        );
        not_before = Instant::now() + MIN_GAP;
        records.push(r);
    }
    Ok(records)
}
