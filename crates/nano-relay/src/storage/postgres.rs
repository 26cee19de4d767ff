//! The PostgreSQL backend (production; several relays share one database).
//!
//! A synchronous client behind a mutex, like the SQLite backend: it is driven by the batch
//! writer and blocking tasks only. Migrations take an advisory lock so relays starting together
//! apply each version once. The guide's indexes are created in the first migration, on empty
//! tables, so they need no `CONCURRENTLY`.

use std::sync::MutexGuard;

use nano_crypto::CryptoMode;
use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::pool::Pool;
use super::{
    Mark, MarkKind, NewMessage, RelayError, Result, Storage, StoreOutcome, StoredMessage,
    UserRecord, fixed_from_db, schema,
};

/// PostgreSQL storage.
pub struct PostgresStorage {
    clients: Pool<Client>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never printed.
        f.write_str("PostgresStorage")
    }
}

fn backend(e: postgres::Error) -> RelayError {
    // The server's message says what went wrong; the client's Display says only "db error".
    let msg = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    RelayError::Storage(msg)
}

fn mode(v: i16) -> Result<CryptoMode> {
    super::mode_from_db(i64::from(v))
}

const MIGRATION_LOCK: i64 = 0x6e61_6e6f_6d73_6731; // "nanomsg1"

impl PostgresStorage {
    /// Connects to `url` (`postgres://…`). With `schema`, every table lives in that schema
    /// (created if absent): tests use one schema each so they never share rows.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        Self::connect_pool(url, schema, 1)
    }

    /// As [`PostgresStorage::connect`], with `connections` pooled connections.
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
        let mut client = Client::connect(url, NoTls).map_err(backend)?;
        // `IF NOT EXISTS` is not safe against a concurrent creator: relays starting together
        // serialize on the migration lock here too.
        let mut tx = client.transaction().map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(backend)?;
        if let Some(s) = schema {
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"
            ))
            .map_err(backend)?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let mut clients = vec![client];
        for _ in 1..connections.max(1) {
            let mut c = Client::connect(url, NoTls).map_err(backend)?;
            if let Some(s) = schema {
                c.batch_execute(&format!("SET search_path TO {s}"))
                    .map_err(backend)?;
            }
            clients.push(c);
        }
        let clients = Pool::new(clients).ok_or_else(|| RelayError::Storage("empty pool".into()))?;
        Ok(Self { clients })
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        self.clients.get()
    }

    /// Connections in the pool.
    pub fn pool_len(&self) -> usize {
        self.clients.len()
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
        Ok(row.map(|r| r.get(0)))
    }

    fn pending_count(&mut self, recipient_id: i64) -> Result<u64> {
        let n: i64 = self
            .tx
            .query_one(&self.count, &[&recipient_id])
            .map_err(backend)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
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
        Ok(row.get(0))
    }
}

impl Storage for PostgresStorage {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&self) -> Result<u32> {
        let mut client = self.client();
        let latest = schema::latest(schema::POSTGRES);
        let mut tx = client.transaction().map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(backend)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(backend)?
            .get(0);
        let current = u32::try_from(current).unwrap_or(0);
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
        Ok(latest)
    }

    fn schema_version(&self) -> Result<u32> {
        let v: i32 = self
            .client()
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(backend)?
            .get(0);
        Ok(u32::try_from(v).unwrap_or(0))
    }

    fn ping(&self) -> Result<()> {
        self.client()
            .simple_query("SELECT 1")
            .map(|_| ())
            .map_err(backend)
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
        let res = self.client().query_one(
            "INSERT INTO users (username, bundle, fingerprint, min_mode, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            &[&username, &bundle, &&fingerprint[..], &m, &now_ms],
        );
        match res {
            Ok(row) => Ok(UserRecord {
                id: row.get(0),
                username: username.to_owned(),
                bundle: bundle.to_vec(),
                fingerprint: *fingerprint,
                min_mode,
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(RelayError::NameTaken),
            Err(e) => Err(backend(e)),
        }
    }

    fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let row = self
            .client()
            .query_opt(
                "SELECT id, username, bundle, fingerprint, min_mode FROM users WHERE username = $1",
                &[&username],
            )
            .map_err(backend)?;
        row.map(|r| {
            Ok(UserRecord {
                id: r.get(0),
                username: r.get(1),
                bundle: r.get(2),
                fingerprint: fixed_from_db(r.get(3), "fingerprint")?,
                min_mode: mode(r.get(4))?,
            })
        })
        .transpose()
    }

    fn replace_bundle(
        &self,
        username: &str,
        expected: &[u8; 32],
        bundle: &[u8],
        fingerprint: &[u8; 32],
        min_mode: CryptoMode,
        now_ms: i64,
    ) -> Result<()> {
        let mut client = self.client();
        let m = i16::from(min_mode.to_byte());
        let n = client
            .execute(
                "UPDATE users SET bundle = $1, fingerprint = $2, min_mode = $3, updated_at = $4
                 WHERE username = $5 AND fingerprint = $6",
                &[
                    &bundle,
                    &&fingerprint[..],
                    &m,
                    &now_ms,
                    &username,
                    &&expected[..],
                ],
            )
            .map_err(backend)?;
        if n == 1 {
            return Ok(());
        }
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)",
                &[&username],
            )
            .map_err(backend)?
            .get(0);
        Err(if exists {
            RelayError::Conflict
        } else {
            RelayError::NotFound
        })
    }

    fn store_batch(&self, batch: &[NewMessage], inbox_quota: u64) -> Result<Vec<StoreOutcome>> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(backend)?;
        let existing = tx
            .prepare("SELECT seq FROM messages WHERE recipient_id = $1 AND message_id = $2")
            .map_err(backend)?;
        let count = tx
            .prepare("SELECT COUNT(*) FROM messages WHERE recipient_id = $1 AND deleted_at IS NULL")
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
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn pending(&self, recipient_id: i64, after: i64, limit: u32) -> Result<Vec<StoredMessage>> {
        let rows = self
            .client()
            .query(
                "SELECT m.seq, m.message_id, u.username, m.crypto_mode, m.timestamp, m.payload, m.read_at
                 FROM messages m LEFT JOIN users u ON u.id = m.sender_id
                 WHERE m.recipient_id = $1 AND m.deleted_at IS NULL AND m.seq > $2
                 ORDER BY m.seq LIMIT $3",
                &[&recipient_id, &after, &i64::from(limit)],
            )
            .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredMessage {
                    seq: r.get(0),
                    message_id: fixed_from_db(r.get(1), "message_id")?,
                    sender: r.get(2),
                    crypto_mode: mode(r.get(3))?,
                    timestamp_ms: r.get(4),
                    payload: r.get(5),
                    read_at: r.get(6),
                })
            })
            .collect()
    }

    fn pending_count(&self, recipient_id: i64) -> Result<u64> {
        let n: i64 = self
            .client()
            .query_one(
                "SELECT COUNT(*) FROM messages WHERE recipient_id = $1 AND deleted_at IS NULL",
                &[&recipient_id],
            )
            .map_err(backend)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn mark_batch(&self, marks: &[Mark], now_ms: i64) -> Result<Vec<u64>> {
        let mut client = self.client();
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
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn cleanup(&self, expire_before_ms: i64, limit: u32) -> Result<u64> {
        self.client()
            .execute(
                "DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM messages WHERE deleted_at IS NOT NULL
                     UNION ALL
                     SELECT seq FROM messages WHERE deleted_at IS NULL AND timestamp < $1
                     LIMIT $2)",
                &[&expire_before_ms, &i64::from(limit)],
            )
            .map_err(backend)
    }
}
