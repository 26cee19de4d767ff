//! The PostgreSQL connection pool: r2d2 clients that reconnect on their own, checkouts that fail
//! fast during an outage, one retry on a connection found closed (see `postgres`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nano_crypto::CryptoMode;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use crate::storage::{RelayError, Result, users_unique_violation};

/// The users table's unique-violation error for `e`: which constraint decides the code.
pub(super) fn unique_violation(e: &postgres::Error) -> RelayError {
    users_unique_violation(
        e.as_db_error()
            .and_then(|d| d.constraint())
            .unwrap_or_default(),
    )
}

/// Longest wait for a pooled connection (or a new one while the server is away).
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a new connection's TCP and startup handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest any one statement may run (`statement_timeout`), so no blocking thread waits on a
/// hung server for ever.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

type Manager = PostgresConnectionManager<NoTls>;
type Conn = r2d2::PooledConnection<Manager>;

/// While the server is away, one checkout per this interval waits for a connection; the
/// others fail at once, so a send during an outage is refused promptly instead of queueing.
const OUTAGE_RETRY: Duration = Duration::from_millis(500);

/// PostgreSQL storage.
pub struct PostgresStorage {
    /// `None` only while dropping (see the `Drop` impl).
    pool: Option<r2d2::Pool<Manager>>,
    /// When a checkout last failed for want of a connection (`None` while the server answers).
    outage: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never printed.
        f.write_str("PostgresStorage")
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // A synchronous client closes its connection on its own runtime, which panics on a
        // thread already inside one (the relay's async workers): drop the pool elsewhere.
        if let Some(pool) = self.pool.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let spare = std::sync::Arc::new(std::sync::Mutex::new(Some(pool)));
            let moved = std::sync::Arc::clone(&spare);
            let spawned = std::thread::Builder::new()
                .name("pg-pool-drop".into())
                .spawn(move || drop(moved.lock().ok().and_then(|mut p| p.take())));
            if spawned.is_err() {
                // No thread to close it on: leak it rather than panic here.
                if let Some(p) = spare.lock().ok().and_then(|mut p| p.take()) {
                    std::mem::forget(p);
                }
            }
        }
    }
}

/// Commits `tx`. A failure here leaves the outcome unknown (the server may have committed before
/// the connection died), so it is reported as [`RelayError::Unreachable`], which is never
/// retried on another connection; a client's resend with the same ids is deduplicated.
pub(super) fn commit(tx: postgres::Transaction<'_>) -> Result<()> {
    tx.commit().map_err(|e| {
        RelayError::Unreachable(format!(
            "connection lost while committing (outcome unknown): {e}"
        ))
    })
}

pub(super) fn backend(e: postgres::Error) -> RelayError {
    // The server's message says what went wrong; the client's Display says only "db error".
    let msg = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    RelayError::Storage(msg)
}

/// A column read with the type the schema gives it; a mismatch means the database is not what
/// this build expects (a permanent fault, not a transient one).
pub(super) fn col<'a, T: postgres::types::FromSql<'a>>(
    row: &'a postgres::Row,
    i: usize,
) -> Result<T> {
    row.try_get(i)
        .map_err(|e| RelayError::Corrupt(format!("column {i}: {e}")))
}

pub(super) fn mode(v: i16) -> Result<CryptoMode> {
    crate::storage::mode_from_db(i64::from(v))
}

pub(super) const MIGRATION_LOCK: i64 = 0x6e61_6e6f_6d73_6731; // "nanomsg1"

/// Sets up every new connection: the statement timeout and, for tests, the schema.
#[derive(Debug)]
struct Setup {
    schema: Option<String>,
}

impl r2d2::CustomizeConnection<Client, postgres::Error> for Setup {
    fn on_acquire(&self, c: &mut Client) -> core::result::Result<(), postgres::Error> {
        let mut sql = format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS};");
        if let Some(s) = &self.schema {
            sql.push_str(&format!("SET search_path TO {s};"));
        }
        c.batch_execute(&sql)
    }
}

/// Connection failures while the server is away, logged at most once per interval.
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<postgres::Error> for LogErrors {
    fn handle_error(&self, e: postgres::Error) {
        crate::telemetry::log_limit::warn("PostgreSQL connection failed; retrying", &backend(e));
    }
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://…`). With `schema`, every table lives in that schema
    /// (created if absent): tests use one schema each so they never share rows.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        Self::connect_pool(url, schema, 1)
    }

    /// As [`PostgresStorage::connect`], with up to `connections` pooled connections. Fails if
    /// the server cannot be reached now; later outages are survived (see the module docs).
    pub fn connect_pool(url: &str, schema: Option<&str>, connections: usize) -> Result<Self> {
        if let Some(s) = schema
            && (s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(RelayError::Storage("schema name must be [a-z0-9_]+".into()));
        }
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| RelayError::Storage(format!("storage.url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A server that vanishes without a reset (a failover, a dead host) is noticed within
        // seconds instead of the kernel's retransmission timeout (about 15 minutes).
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(35));
        let mut first = config.connect(NoTls).map_err(backend)?;
        // `IF NOT EXISTS` is not safe against a concurrent creator: relays starting together
        // serialize on the migration lock here too.
        let mut tx = first.transaction().map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(backend)?;
        if let Some(s) = schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .map_err(backend)?;
            tx.batch_execute(&format!("SET LOCAL search_path TO {s}"))
                .map_err(backend)?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        drop(first);
        let max = u32::try_from(connections.max(1)).unwrap_or(u32::MAX);
        let pool = r2d2::Pool::builder()
            .max_size(max)
            // Connections are made when needed and kept; none is held open for nothing.
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // `has_broken` (a closed connection) discards dead ones on return; a round trip per
            // checkout would cost every operation for what one retry handles.
            .test_on_check_out(false)
            .error_handler(Box::new(LogErrors))
            .connection_customizer(Box::new(Setup {
                schema: schema.map(str::to_owned),
            }))
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| RelayError::Storage(e.to_string()))?;
        Ok(Self {
            pool: Some(pool),
            outage: Mutex::new(None),
        })
    }

    fn pool(&self) -> Result<&r2d2::Pool<Manager>> {
        self.pool
            .as_ref()
            .ok_or_else(|| RelayError::Storage("storage closed".into()))
    }

    fn checkout(&self) -> Result<Conn> {
        let pool = self.pool()?;
        let now = Instant::now();
        {
            let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(since) = *outage {
                if now.duration_since(since) < OUTAGE_RETRY {
                    return pool.try_get().ok_or_else(|| {
                        RelayError::Unreachable("no connection to PostgreSQL (reconnecting)".into())
                    });
                }
                // This caller tries; the others keep failing fast until it knows.
                *outage = Some(now);
            }
        }
        let got = pool.get();
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match got {
            Ok(c) => {
                *outage = None;
                Ok(c)
            }
            // Every connection busy is load, not an outage: wait again next time.
            Err(e) if pool.state().connections > 0 => {
                *outage = None;
                Err(RelayError::Storage(format!("all connections busy: {e}")))
            }
            Err(e) => {
                *outage = Some(Instant::now());
                Err(RelayError::Unreachable(format!(
                    "no connection to PostgreSQL: {e}"
                )))
            }
        }
    }

    /// Runs `f` on a pooled connection. If it fails because the server closed that connection
    /// (a restart), the connection is discarded and `f` runs again on another, up to the pool's
    /// size plus one times, told that it is a retry. Every operation here is one statement or
    /// one transaction: a transaction whose COMMIT got no answer is not retried (see
    /// [`commit`]), and a single statement whose answer was lost may have been applied, so
    /// single-statement writes check on a retry whether they already were.
    pub(super) fn with<T>(&self, f: impl Fn(&mut Client, bool) -> Result<T>) -> Result<T> {
        // After a restart every pooled connection is dead: try each in turn, then a fresh one.
        let attempts = self.pool()?.max_size() + 1;
        let mut tried = 0;
        loop {
            let mut conn = self.checkout()?;
            tried += 1;
            match f(&mut conn, tried > 1) {
                // The probe also makes the client notice a closed socket, so `has_broken`
                // discards the connection when it returns to the pool.
                Err(RelayError::Storage(_))
                    if tried < attempts && (conn.is_closed() || conn.simple_query("").is_err()) => {
                }
                other => return other,
            }
        }
    }

    /// Connections open now (idle and in use).
    pub fn pool_len(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(0, |p| p.state().connections as usize)
    }
}
