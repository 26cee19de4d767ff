//! The embedded SQLite backend (WAL journal): one writing connection behind a mutex, and a pool
//! of reading connections (`storage.pool_size − 1`).
//!
//! One writer at a time is SQLite's model anyway; the batch writer keeps transactions short and
//! large, so the writer's mutex is rarely contended, and in WAL mode readers never wait for it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use nano_crypto::CryptoMode;
use rusqlite::{Connection, OptionalExtension, params};

mod prekeys;

use super::pool::Pool;
use super::{
    Mark, MarkKind, NewMessage, RelayError, Result, Rotation, Storage, StoreOutcome, StoredMessage,
    UserRecord, fixed_from_db, mode_from_db, schema, users_unique_violation, version_from_db,
};

/// SQLite storage.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    readers: Option<Pool<Connection>>,
    /// A connection of its own for WAL checkpoints, so copying the log back into the database
    /// never holds up a commit (file databases only).
    checkpointer: Option<Mutex<Connection>>,
    /// Set whenever the writer connection is released: there may be log to copy back.
    dirty: AtomicBool,
}

fn backend(e: rusqlite::Error) -> RelayError {
    use rusqlite::Error as E;
    match e {
        // A column of another type or range than the schema gives it: permanent, not transient.
        E::InvalidColumnType(..)
        | E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..) => RelayError::Corrupt(e.to_string()),
        _ => RelayError::Storage(e.to_string()),
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_pool(path, 1)
    }

    /// As [`SqliteStorage::open`], with `connections − 1` extra read-only connections.
    pub fn open_pool(path: &Path, connections: usize) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RelayError::Storage(e.to_string()))?;
        }
        let mut s = Self::setup(Connection::open(path).map_err(backend)?)?;
        let readers = (1..connections.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(backend)?;
                c.execute_batch("PRAGMA busy_timeout = 5000;")
                    .map_err(backend)?;
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        s.readers = Pool::new(readers);
        let checkpointer = Connection::open(path).map_err(backend)?;
        checkpointer
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(backend)?;
        s.checkpointer = Some(Mutex::new(checkpointer));
        Ok(s)
    }

    /// An in-memory database (tests, benchmarks).
    pub fn in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory().map_err(backend)?)
    }

    fn setup(conn: Connection) -> Result<Self> {
        // 2 KiB pages: every message dirties one leaf per inbox-keyed index, each at its own
        // recipient's place, so a commit's WAL bytes grow with the page size (docs/OPERATIONS.md).
        // A 4 MiB page cache: B-tree balancing renumbers pages through the lock-byte page's
        // number, so while the file is under 1 GiB every commit that split a page walks the
        // whole page cache (SQLite's `pcache1TruncateUnsafe`), at a cost that grows with it.
        conn.execute_batch(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -4096;
             PRAGMA wal_autocheckpoint = 16000;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
        )
        .map_err(backend)?;
        Ok(Self {
            conn: Mutex::new(conn),
            readers: None,
            checkpointer: None,
            dirty: AtomicBool::new(false),
        })
    }

    /// A connection for a read: a pooled reader, or the writer when there is none.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        match &self.readers {
            Some(p) => p.get(),
            None => self.lock_writer(),
        }
    }

    /// The writer connection, for a write: releasing it marks the log for checkpointing.
    fn conn(&self) -> WriterGuard<'_> {
        WriterGuard {
            conn: self.lock_writer(),
            dirty: &self.dirty,
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The locked writer connection. Marked dirty when released, after the write has committed,
/// so a checkpoint taken meanwhile cannot clear the mark before the write is in the log.
struct WriterGuard<'a> {
    conn: MutexGuard<'a, Connection>,
    dirty: &'a AtomicBool,
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.dirty.store(true, Ordering::Relaxed);
    }
}

/// `users` columns as read: id, username, bundle, fingerprint, min_mode.
type UserRow = (i64, String, Vec<u8>, Vec<u8>, i64, i64);

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

/// `nano_payload_bytes(x)`, which migration 5 uses: a text row's payload bytes
/// (`Payload::from_json_text`), a blob as it is.
fn register_payload_bytes(conn: &rusqlite::Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::ValueRef;
    conn.create_scalar_function(
        "nano_payload_bytes",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => {
                    nano_proto::Payload::from_json_text(&String::from_utf8_lossy(t)).0
                }
                ValueRef::Blob(b) => b.to_vec(),
                _ => Vec::new(),
            })
        },
    )
    .map_err(backend)
}

impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self) -> Result<u32> {
        let mut conn = self.conn();
        let current: u32 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let latest = schema::latest(schema::SQLITE);
        if current > latest {
            return Err(RelayError::SchemaTooNew {
                found: current,
                supported: latest,
            });
        }
        register_payload_bytes(&conn)?;
        for (version, sql) in schema::SQLITE.iter().filter(|(v, _)| *v > current) {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute_batch(sql).map_err(backend)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))",
                params![version],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        let rows = {
            let mut q = conn
                .prepare("SELECT id, username FROM users WHERE name_key IS NULL")
                .map_err(backend)?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<(i64, String)>>>)
                .map_err(backend)?
        };
        super::backfill_name_keys(rows, |id, key| {
            match conn.execute(
                "UPDATE users SET name_key = ?1 WHERE id = ?2",
                params![key, id],
            ) {
                Ok(_) => Ok(true),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(false)
                }
                Err(e) => Err(backend(e)),
            }
        })?;
        Ok(latest)
    }

    fn schema_version(&self) -> Result<u32> {
        self.conn()
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
    }

    fn probe(&self) -> Result<u32> {
        let conn = self.conn();
        let v: i64 = conn
            .query_row(schema::PROBE, [], |r| r.get(0))
            .map_err(backend)?;
        conn.execute(schema::PROBE_WRITE, []).map_err(backend)?;
        u32::try_from(v).map_err(|_| RelayError::Corrupt("schema version out of range".into()))
    }

    fn create_user(
        &self,
        username: &str,
        bundle: &[u8],
        fingerprint: &[u8; 32],
        min_mode: CryptoMode,
        now_ms: i64,
    ) -> Result<UserRecord> {
        let conn = self.conn();
        let res = conn.execute(
            "INSERT INTO users (username, name_key, bundle, fingerprint, min_mode, created_at,
                                updated_at)
             VALUES (?1, ?6, ?2, ?3, ?4, ?5, ?5)",
            params![
                username,
                bundle,
                &fingerprint[..],
                min_mode.to_byte(),
                now_ms,
                super::name_key(username)
            ],
        );
        match res {
            Ok(_) => Ok(UserRecord {
                id: conn.last_insert_rowid(),
                username: username.to_owned(),
                bundle: bundle.to_vec(),
                fingerprint: *fingerprint,
                min_mode,
                key_version: 0,
            }),
            Err(rusqlite::Error::SqliteFailure(e, msg))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(users_unique_violation(msg.as_deref().unwrap_or("")))
            }
            Err(e) => Err(backend(e)),
        }
    }

    fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let conn = self.reader();
        let row = conn
            .prepare_cached(
                "SELECT id, username, bundle, fingerprint, min_mode, key_version FROM users
                 WHERE username = ?1",
            )
            .and_then(|mut stmt| stmt.query_row(params![username], user_row).optional())
            .map_err(backend)?;
        row.map(|(id, username, bundle, fp, m, v)| {
            Ok(UserRecord {
                id,
                username,
                bundle,
                fingerprint: fixed_from_db(fp, "fingerprint")?,
                min_mode: mode_from_db(m)?,
                key_version: version_from_db(v)?,
            })
        })
        .transpose()
    }

    fn replace_bundle(&self, r: &Rotation<'_>) -> Result<()> {
        let Rotation {
            username,
            expected,
            version,
            bundle,
            fingerprint,
            min_mode,
            now_ms,
        } = *r;
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE users SET bundle = ?1, fingerprint = ?2, min_mode = ?3, updated_at = ?4,
                     key_version = key_version + 1
                 WHERE username = ?5 AND fingerprint = ?6 AND key_version = ?7",
                params![
                    bundle,
                    &fingerprint[..],
                    min_mode.to_byte(),
                    now_ms,
                    username,
                    &expected[..],
                    i64::try_from(version).unwrap_or(i64::MAX)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, msg)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    users_unique_violation(msg.as_deref().unwrap_or(""))
                }
                e => backend(e),
            })?;
        if n == 1 {
            return Ok(());
        }
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1)",
                params![username],
                |r| r.get(0),
            )
            .map_err(backend)?;
        Err(if exists {
            RelayError::Conflict
        } else {
            RelayError::NotFound
        })
    }

    fn store_batch(&self, batch: &[NewMessage], inbox_quota: u64) -> Result<Vec<StoreOutcome>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let out = store_in(&tx, batch, inbox_quota)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn store_and_mark(
        &self,
        batch: &[NewMessage],
        inbox_quota: u64,
        marks: &[Mark],
        now_ms: i64,
    ) -> (Result<Vec<StoreOutcome>>, Result<Vec<u64>>) {
        let both = || -> Result<(Vec<StoreOutcome>, Vec<u64>)> {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(backend)?;
            let stored = store_in(&tx, batch, inbox_quota)?;
            let marked = mark_in(&tx, marks, now_ms)?;
            tx.commit().map_err(backend)?;
            Ok((stored, marked))
        };
        match both() {
            Ok((stored, marked)) => (Ok(stored), Ok(marked)),
            // Nothing of either was committed.
            Err(e) => (Err(e.clone()), Err(e)),
        }
    }

    fn pending(&self, recipient_id: i64, after: i64, limit: u32) -> Result<Vec<StoredMessage>> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT m.seq, m.message_id, u.username, m.crypto_mode, m.timestamp, m.payload, m.read_at
                 FROM messages m LEFT JOIN users u ON u.id = m.sender_id
                 WHERE m.recipient_id = ?1 AND m.deleted_at IS NULL AND m.seq > ?2
                 ORDER BY m.seq LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![recipient_id, after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(backend)?;
        rows.map(|row| {
            let (seq, id, sender, m, timestamp_ms, payload, read_at) = row.map_err(backend)?;
            Ok(StoredMessage {
                seq,
                message_id: fixed_from_db(id, "message_id")?,
                sender,
                crypto_mode: mode_from_db(m)?,
                timestamp_ms,
                payload: nano_proto::Payload(payload),
                read_at,
            })
        })
        .collect()
    }

    fn pending_count(&self, recipient_id: i64) -> Result<u64> {
        let n: i64 = self
            .reader()
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE recipient_id = ?1 AND deleted_at IS NULL",
                params![recipient_id],
                |r| r.get(0),
            )
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn mark_batch(&self, marks: &[Mark], now_ms: i64) -> Result<Vec<u64>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let out = mark_in(&tx, marks, now_ms)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn wants_checkpoint(&self) -> bool {
        self.checkpointer.is_some() && self.dirty.load(Ordering::Relaxed)
    }

    fn checkpoint(&self) -> Result<()> {
        // Cleared first: a commit landing during this checkpoint sets it again.
        self.dirty.store(false, Ordering::Relaxed);
        if let Some(c) = &self.checkpointer {
            // PASSIVE: copies what no reader still needs, waits for no one, blocks no writer.
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(backend)?;
        }
        Ok(())
    }

    fn cleanup(&self, expire_before_ms: i64, tombstone_before_ms: i64, limit: u32) -> Result<u64> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM messages WHERE seq IN (
                     SELECT seq FROM messages WHERE deleted_at IS NOT NULL AND deleted_at < ?2
                     UNION ALL
                     SELECT seq FROM messages WHERE deleted_at IS NULL AND timestamp < ?1
                     LIMIT ?3)",
                params![expire_before_ms, tombstone_before_ms, limit],
            )
            .map_err(backend)?;
        Ok(n as u64)
    }
}

/// Stores `batch` inside `tx` ([`Storage::store_batch`]).
fn store_in(
    tx: &rusqlite::Transaction<'_>,
    batch: &[NewMessage],
    inbox_quota: u64,
) -> Result<Vec<StoreOutcome>> {
    let mut q = SqliteBatch {
        existing: tx
            .prepare_cached("SELECT seq FROM messages WHERE recipient_id = ?1 AND message_id = ?2")
            .map_err(backend)?,
        count: tx
            .prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE recipient_id = ?1 AND deleted_at IS NULL",
            )
            .map_err(backend)?,
        insert: tx
            .prepare_cached(
                "INSERT INTO messages (message_id, recipient_id, sender_id, crypto_mode, timestamp, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (recipient_id, message_id) DO NOTHING RETURNING seq",
            )
            .map_err(backend)?,
    };
    super::store_with(&mut q, batch, inbox_quota)
}

/// Applies `marks` inside `tx` ([`Storage::mark_batch`]).
fn mark_in(tx: &rusqlite::Transaction<'_>, marks: &[Mark], now_ms: i64) -> Result<Vec<u64>> {
    let placeholders = ["?1", "?2", "?3"];
    let mut ack = tx
        .prepare_cached(&MarkKind::Ack.sql(placeholders))
        .map_err(backend)?;
    let mut read = tx
        .prepare_cached(&MarkKind::Read.sql(placeholders))
        .map_err(backend)?;
    let mut out = Vec::with_capacity(marks.len());
    for m in marks {
        let stmt = match m.kind {
            MarkKind::Ack => &mut ack,
            MarkKind::Read => &mut read,
        };
        let mut n = 0u64;
        for id in &m.ids {
            n += stmt
                .execute(params![now_ms, m.recipient_id, &id[..]])
                .map_err(backend)? as u64;
        }
        out.push(n);
    }
    Ok(out)
}

/// The batch queries inside one SQLite transaction.
struct SqliteBatch<'t> {
    existing: rusqlite::CachedStatement<'t>,
    count: rusqlite::CachedStatement<'t>,
    insert: rusqlite::CachedStatement<'t>,
}

impl super::BatchQueries for SqliteBatch<'_> {
    fn existing_seq(&mut self, m: &NewMessage) -> Result<Option<i64>> {
        self.existing
            .query_row(params![m.recipient_id, &m.message_id[..]], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn pending_count(&mut self, recipient_id: i64) -> Result<u64> {
        let n: i64 = self
            .count
            .query_row(params![recipient_id], |r| r.get(0))
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn insert(&mut self, m: &NewMessage) -> Result<Option<i64>> {
        self.insert
            .query_row(
                params![
                    &m.message_id[..],
                    m.recipient_id,
                    m.sender_id,
                    m.crypto_mode.to_byte(),
                    m.timestamp_ms,
                    m.payload.as_slice()
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
    }
}
