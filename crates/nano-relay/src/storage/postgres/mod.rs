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

use nano_crypto::CryptoMode;
use postgres::error::SqlState;

mod pool;
mod prekeys;

use super::{
    Mark, MarkKind, NewMessage, RelayError, Result, Rotation, Storage, StoreOutcome, StoredMessage,
    UserRecord, fixed_from_db, schema, version_from_db,
};
pub use pool::{CHECKOUT_TIMEOUT, PostgresStorage};
use pool::{MIGRATION_LOCK, backend, col, commit, mode, unique_violation};

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

    fn insert(&mut self, m: &NewMessage) -> Result<Option<i64>> {
        let mode = i16::from(m.crypto_mode.to_byte());
        let row = self
            .tx
            .query_opt(
                &self.insert,
                &[
                    &&m.message_id[..],
                    &m.recipient_id,
                    &m.sender_id,
                    &mode,
                    &m.timestamp_ms,
                    &m.payload.as_slice(),
                ],
            )
            .map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
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
                        if let Some(r) = row.map(|r| user_record(&r)).transpose()?
                            && r.fingerprint == *fingerprint
                            && r.bundle == bundle
                        {
                            return Ok(r);
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
        let mut recipients: Vec<i64> = batch.iter().map(|m| m.recipient_id).collect();
        recipients.sort_unstable();
        recipients.dedup();
        self.with(|client, _| {
            let mut tx = client.transaction().map_err(backend)?;
            // Batches of several relays for one recipient are stored one after the other, so
            // each counts the inbox with the other's messages in it and none passes the quota.
            // The rows are locked in id order (no deadlock between batches); `NO KEY UPDATE`
            // leaves the key-share locks of the inserts' foreign keys free.
            tx.execute(
                "SELECT 1 FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
                &[&recipients],
            )
            .map_err(backend)?;
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
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (recipient_id, message_id) DO NOTHING RETURNING seq",
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
                        payload: nano_proto::Payload(col(r, 5)?),
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
