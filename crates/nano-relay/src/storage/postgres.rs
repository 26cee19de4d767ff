//! The PostgreSQL backend (production; several relays share one database).
//!
//! A pool of synchronous clients (r2d2), driven by the batch writer and blocking tasks only.
//! Every operation checks a connection out of the pool; one the server closed (a restart, a
//! terminated backend) is discarded on return and replaced, so the relay reconnects on its own.
//! An operation that fails because its connection was found closed runs once more on a fresh
//! one; while the server is down, operations fail within [`CHECKOUT_TIMEOUT`] as
//! [`RelayError::Unreachable`] (the wire's retryable `unavailable`). A commit whose answer was
//! lost is never run again (its outcome is unknown): it fails as `Unreachable`, and the
//! client's resend with the same id is deduplicated.
//!
//! Migrations take an advisory lock so relays starting together apply each version once. The
//! guide's indexes are created in the first migration, on empty tables, so they need no
//! `CONCURRENTLY`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nano_crypto::CryptoMode;
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    Mark, MarkKind, NewMessage, RelayError, Result, Storage, StoreOutcome, StoredMessage,
    UserRecord, fixed_from_db, schema, users_unique_violation, version_from_db,
};

/// The users table's unique-violation error for `e`: which constraint decides the code.
fn unique_violation(e: &postgres::Error) -> RelayError {
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
        if let Some(pool) = self.pool.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
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
}

/// Commits `tx`. A failure here leaves the outcome unknown (the server may have committed before
/// the connection died), so it is reported as [`RelayError::Unreachable`], which is never
/// retried on another connection; a client's resend with the same ids is deduplicated.
fn commit(tx: postgres::Transaction<'_>) -> Result<()> {
    tx.commit().map_err(|e| {
        RelayError::Unreachable(format!(
            "connection lost while committing (outcome unknown): {e}"
        ))
    })
}

fn backend(e: postgres::Error) -> RelayError {
    // The server's message says what went wrong; the client's Display says only "db error".
    let msg = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    RelayError::Storage(msg)
}

/// A column read with the type the schema gives it; a mismatch means the database is not what
/// this build expects (a permanent fault, not a transient one).
fn col<'a, T: postgres::types::FromSql<'a>>(row: &'a postgres::Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| RelayError::Corrupt(format!("column {i}: {e}")))
}

fn mode(v: i16) -> Result<CryptoMode> {
    super::mode_from_db(i64::from(v))
}

const MIGRATION_LOCK: i64 = 0x6e61_6e6f_6d73_6731; // "nanomsg1"

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
        if let Some(s) = schema {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(RelayError::Storage("schema name must be [a-z0-9_]+".into()));
            }
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
    fn with<T>(&self, f: impl Fn(&mut Client, bool) -> Result<T>) -> Result<T> {
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

/// The batch queries inside one PostgreSQL transaction.
struct PgBatch<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    existing: postgres::Statement,
    count: postgres::Statement,
    insert: postgres::Statement,
}

impl super::BatchQueries for PgBatch<'_, '_> {
    fn existing_seq(&mut self, m: &NewMessage) -> Result<Option<i64>> {
        let row = self
            .tx
            .query_opt(&self.existing, &[&m.recipient_id, &&m.message_id[..]])
            .map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
    }

    fn pending_count(&mut self, recipient_id: i64) -> Result<u64> {
        let row = self
            .tx
            .query_one(&self.count, &[&recipient_id])
            .map_err(backend)?;
        Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(u64::MAX))
    }

    fn insert(&mut self, m: &NewMessage) -> Result<i64> {
        let mode = i16::from(m.crypto_mode.to_byte());
        let row = self
            .tx
            .query_one(
                &self.insert,
                &[
                    &&m.message_id[..],
                    &m.recipient_id,
                    &m.sender_id,
                    &mode,
                    &m.timestamp_ms,
                    &m.payload,
                ],
            )
            .map_err(backend)?;
        col(&row, 0)
    }
}

fn schema_version(c: &mut impl postgres::GenericClient) -> Result<u32> {
    let row = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(backend)?;
    Ok(u32::try_from(col::<i32>(&row, 0)?).unwrap_or(0))
}

fn user_record(r: &postgres::Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: col(r, 0)?,
        username: col(r, 1)?,
        bundle: col(r, 2)?,
        fingerprint: fixed_from_db(col(r, 3)?, "fingerprint")?,
        min_mode: mode(col(r, 4)?)?,
        key_version: version_from_db(col(r, 5)?)?,
    })
}

impl Storage for PostgresStorage {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&self) -> Result<u32> {
        self.with(|client, _| {
            let latest = schema::latest(schema::POSTGRES);
            let mut tx = client.transaction().map_err(backend)?;
            // A migration (or the wait for another relay's) may take longer than any request.
            tx.batch_execute("SET LOCAL statement_timeout = 0")
                .map_err(backend)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .map_err(backend)?;
            let current = schema_version(&mut tx)?;
            if current > latest {
                return Err(RelayError::SchemaTooNew {
                    found: current,
                    supported: latest,
                });
            }
            for (version, sql) in schema::POSTGRES.iter().filter(|(v, _)| *v > current) {
                tx.batch_execute(sql).map_err(backend)?;
                let v = i32::try_from(*version).unwrap_or(i32::MAX);
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at)
                     VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                    &[&v],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            let rows = client
                .query("SELECT id, username FROM users WHERE name_key IS NULL", &[])
                .map_err(backend)?
                .iter()
                .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                .collect::<Result<Vec<(i64, String)>>>()?;
            super::backfill_name_keys(rows, |id, key| {
                match client.execute("UPDATE users SET name_key = $1 WHERE id = $2", &[&key, &id]) {
                    Ok(_) => Ok(true),
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
                    Err(e) => Err(backend(e)),
                }
            })?;
            Ok(latest)
        })
    }

    fn schema_version(&self) -> Result<u32> {
        self.with(|c, _| schema_version(c))
    }

    fn probe(&self) -> Result<u32> {
        self.with(|c, _| {
            let row = c.query_one(schema::PROBE, &[]).map_err(backend)?;
            c.execute(schema::PROBE_WRITE, &[]).map_err(backend)?;
            u32::try_from(col::<i64>(&row, 0)?)
                .map_err(|_| RelayError::Corrupt("schema version out of range".into()))
        })
    }

    fn create_user(
        &self,
        username: &str,
        bundle: &[u8],
        fingerprint: &[u8; 32],
        min_mode: CryptoMode,
        now_ms: i64,
    ) -> Result<UserRecord> {
        let m = i16::from(min_mode.to_byte());
        let key = super::name_key(username);
        self.with(|c, retry| {
            let res = c.query_one(
                "INSERT INTO users (username, name_key, bundle, fingerprint, min_mode, created_at,
                                    updated_at)
                 VALUES ($1, $6, $2, $3, $4, $5, $5) RETURNING id",
                &[&username, &bundle, &&fingerprint[..], &m, &now_ms, &key],
            );
            match res {
                Ok(row) => Ok(UserRecord {
                    id: col(&row, 0)?,
                    username: username.to_owned(),
                    bundle: bundle.to_vec(),
                    fingerprint: *fingerprint,
                    min_mode,
                    key_version: 0,
                }),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    // On a retry the first attempt may have inserted this very row.
                    if retry {
                        let row = c
                            .query_opt(
                                "SELECT id, username, bundle, fingerprint, min_mode, key_version
                                 FROM users WHERE username = $1",
                                &[&username],
                            )
                            .map_err(backend)?;
                        if let Some(r) = row.map(|r| user_record(&r)).transpose()? {
                            if r.fingerprint == *fingerprint && r.bundle == bundle {
                                return Ok(r);
                            }
                        }
                    }
                    Err(unique_violation(&e))
                }
                Err(e) => Err(backend(e)),
            }
        })
    }

    fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        self.with(|c, _| {
            c.query_opt(
                "SELECT id, username, bundle, fingerprint, min_mode, key_version FROM users
                 WHERE username = $1",
                &[&username],
            )
            .map_err(backend)?
            .map(|r| user_record(&r))
            .transpose()
        })
    }

    fn replace_bundle(
        &self,
        username: &str,
        expected: &[u8; 32],
        version: u64,
        bundle: &[u8],
        fingerprint: &[u8; 32],
        min_mode: CryptoMode,
        now_ms: i64,
    ) -> Result<()> {
        let m = i16::from(min_mode.to_byte());
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.with(|client, retry| {
            let n = client
                .execute(
                    "UPDATE users SET bundle = $1, fingerprint = $2, min_mode = $3, updated_at = $4,
                         key_version = key_version + 1
                     WHERE username = $5 AND fingerprint = $6 AND key_version = $7",
                    &[
                        &bundle,
                        &&fingerprint[..],
                        &m,
                        &now_ms,
                        &username,
                        &&expected[..],
                        &version,
                    ],
                )
                .map_err(|e| {
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                        unique_violation(&e)
                    } else {
                        backend(e)
                    }
                })?;
            if n == 1 {
                return Ok(());
            }
            let row = client
                .query_opt(
                    "SELECT fingerprint FROM users WHERE username = $1",
                    &[&username],
                )
                .map_err(backend)?;
            match row {
                None => Err(RelayError::NotFound),
                // On a retry the first attempt may have applied this very rotation.
                Some(r) if retry && col::<Vec<u8>>(&r, 0)? == fingerprint[..] => Ok(()),
                Some(_) => Err(RelayError::Conflict),
            }
        })
    }

    fn store_batch(&self, batch: &[NewMessage], inbox_quota: u64) -> Result<Vec<StoreOutcome>> {
        self.with(|client, _| {
            let mut tx = client.transaction().map_err(backend)?;
            let existing = tx
                .prepare("SELECT seq FROM messages WHERE recipient_id = $1 AND message_id = $2")
                .map_err(backend)?;
            let count = tx
                .prepare(
                    "SELECT COUNT(*) FROM messages WHERE recipient_id = $1 AND deleted_at IS NULL",
                )
                .map_err(backend)?;
            let insert = tx
                .prepare(
                    "INSERT INTO messages (message_id, recipient_id, sender_id, crypto_mode, timestamp, payload)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
                )
                .map_err(backend)?;
            let mut q = PgBatch {
                tx: &mut tx,
                existing,
                count,
                insert,
            };
            let out = super::store_with(&mut q, batch, inbox_quota)?;
            commit(tx)?;
            Ok(out)
        })
    }

    fn pending(&self, recipient_id: i64, after: i64, limit: u32) -> Result<Vec<StoredMessage>> {
        self.with(|c, _| {
            let rows = c
                .query(
                    "SELECT m.seq, m.message_id, u.username, m.crypto_mode, m.timestamp, m.payload, m.read_at
                     FROM messages m LEFT JOIN users u ON u.id = m.sender_id
                     WHERE m.recipient_id = $1 AND m.deleted_at IS NULL AND m.seq > $2
                     ORDER BY m.seq LIMIT $3",
                    &[&recipient_id, &after, &i64::from(limit)],
                )
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredMessage {
                        seq: col(r, 0)?,
                        message_id: fixed_from_db(col(r, 1)?, "message_id")?,
                        sender: col(r, 2)?,
                        crypto_mode: mode(col(r, 3)?)?,
                        timestamp_ms: col(r, 4)?,
                        payload: col(r, 5)?,
                        read_at: col(r, 6)?,
                    })
                })
                .collect()
        })
    }

    fn pending_count(&self, recipient_id: i64) -> Result<u64> {
        self.with(|c, _| {
            let row = c
                .query_one(
                    "SELECT COUNT(*) FROM messages WHERE recipient_id = $1 AND deleted_at IS NULL",
                    &[&recipient_id],
                )
                .map_err(backend)?;
            Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
        })
    }

    fn mark_batch(&self, marks: &[Mark], now_ms: i64) -> Result<Vec<u64>> {
        self.with(|client, _| {
            let mut tx = client.transaction().map_err(backend)?;
            let placeholders = ["$1", "$2", "$3"];
            let ack = tx
                .prepare(&MarkKind::Ack.sql(placeholders))
                .map_err(backend)?;
            let read = tx
                .prepare(&MarkKind::Read.sql(placeholders))
                .map_err(backend)?;
            let mut out = Vec::with_capacity(marks.len());
            for m in marks {
                let stmt = match m.kind {
                    MarkKind::Ack => &ack,
                    MarkKind::Read => &read,
                };
                let mut n = 0;
                for id in &m.ids {
                    n += tx
                        .execute(stmt, &[&now_ms, &m.recipient_id, &&id[..]])
                        .map_err(backend)?;
                }
                out.push(n);
            }
            commit(tx)?;
            Ok(out)
        })
    }

    fn cleanup(&self, expire_before_ms: i64, tombstone_before_ms: i64, limit: u32) -> Result<u64> {
        self.with(|c, _| {
            c.execute(
                "DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM messages WHERE deleted_at IS NOT NULL AND deleted_at < $2
                     UNION ALL
                     SELECT seq FROM messages WHERE deleted_at IS NULL AND timestamp < $1
                     LIMIT $3)",
                &[&expire_before_ms, &tombstone_before_ms, &i64::from(limit)],
            )
            .map_err(backend)
        })
    }
}
