//! The SQLite prekey store: one writer connection makes every claim atomic.

use nano_crypto::CryptoMode;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, backend};
use crate::storage::Result;
use crate::storage::prekeys::missing_batch;
use crate::storage::prekeys::{
    BATCH_RECORD, COUNT_BATCHES, COUNT_ONE_TIME, Claimed, DROP_ALL_ONE_TIME, DROP_EMPTY_BATCHES,
    DROP_UNCERTIFIED, INSERT_BATCH, INSERT_ONE_TIME, MAX_SIGNED_RECORDS, OneTimeRows,
    PREKEY_COUNTS, PrekeyStore, SIGNED_KEPT, SignedRecord, check_batch, check_kept, put_count,
};

impl PrekeyStore for SqliteStorage {
    fn put_signed_prekeys(&self, r: &SignedRecord<'_>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let mode = r.mode.to_byte();
        tx.execute(
            "INSERT OR REPLACE INTO signed_prekeys
                (user_id, crypto_mode, prekey_id, record, uploaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.user_id, mode, r.prekey_id, r.record, r.now_ms],
        )
        .map_err(backend)?;
        let keep = r.keep_previous.min(MAX_SIGNED_RECORDS - 1) + 1;
        tx.execute(
            "DELETE FROM signed_prekeys WHERE user_id = ?1 AND crypto_mode = ?2
               AND prekey_id NOT IN (SELECT prekey_id FROM signed_prekeys
                 WHERE user_id = ?1 AND crypto_mode = ?2
                 ORDER BY uploaded_at DESC, prekey_id DESC LIMIT ?3)",
            params![r.user_id, mode, keep],
        )
        .map_err(backend)?;
        for sql in DROP_UNCERTIFIED {
            tx.execute(sql, params![r.user_id, mode]).map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    fn signed_prekeys(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>> {
        let conn = self.reader();
        conn.prepare_cached(
            "SELECT record FROM signed_prekeys WHERE user_id = ?1 AND crypto_mode = ?2
             ORDER BY uploaded_at DESC, prekey_id DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![user_id, mode.to_byte()], |row| row.get(0))
                .optional()
        })
        .map_err(backend)
    }

    fn add_one_time_prekeys(
        &self,
        user_id: i64,
        mode: CryptoMode,
        batch: Option<&OneTimeRows<'_>>,
        replace: bool,
        now_ms: i64,
    ) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let m = mode.to_byte();
        if replace {
            for sql in DROP_ALL_ONE_TIME {
                tx.execute(sql, params![user_id, m]).map_err(backend)?;
            }
        }
        if let Some(b) = batch {
            let kept = tx
                .query_row(SIGNED_KEPT, params![user_id, m, b.signed_id], |_| Ok(()))
                .optional()
                .map_err(backend)?;
            check_kept(b, kept.is_some())?;
            tx.execute(DROP_EMPTY_BATCHES, params![user_id, m])
                .map_err(backend)?;
            tx.execute(
                INSERT_BATCH,
                params![user_id, m, b.batch_id, b.signed_id, b.record, now_ms],
            )
            .map_err(backend)?;
            let held: Vec<u8> = tx
                .query_row(BATCH_RECORD, params![user_id, m, b.batch_id], |row| {
                    row.get(0)
                })
                .map_err(backend)?;
            let batches: i64 = tx
                .query_row(COUNT_BATCHES, params![user_id, m], |row| row.get(0))
                .map_err(backend)?;
            // Dropping `tx` unfinished rolls the upload back.
            check_batch(b, &held, batches)?;
            let mut insert = tx.prepare_cached(INSERT_ONE_TIME).map_err(backend)?;
            for (id, record) in b.prekeys {
                insert
                    .execute(params![user_id, m, id, record, now_ms, b.batch_id])
                    .map_err(backend)?;
            }
        }
        let held: i64 = tx
            .query_row(COUNT_ONE_TIME, params![user_id, m], |row| row.get(0))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(u64::try_from(held).unwrap_or(0))
    }

    fn claim_one_time_prekey(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Claimed>> {
        // One writer connection: the DELETE … RETURNING and the batch's record are one claim.
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let m = mode.to_byte();
        let taken: Option<(Vec<u8>, i64)> = tx
            .prepare_cached(
                "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND crypto_mode = ?2
                   AND prekey_id = (SELECT prekey_id FROM one_time_prekeys
                                     WHERE user_id = ?1 AND crypto_mode = ?2
                                     ORDER BY uploaded_at, prekey_id LIMIT 1)
                 RETURNING record, batch_id",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![user_id, m], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(backend)?;
        let Some((one_time, batch_id)) = taken else {
            return Ok(None);
        };
        let record: Option<Vec<u8>> = tx
            .prepare_cached(BATCH_RECORD)
            .and_then(|mut stmt| {
                stmt.query_row(params![user_id, m, batch_id], |row| row.get(0))
                    .optional()
            })
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Some(Claimed {
            record: record.ok_or_else(|| missing_batch(batch_id))?,
            one_time,
        }))
    }

    fn one_time_prekey_count(&self, user_id: i64, mode: CryptoMode) -> Result<u64> {
        let n: i64 = self
            .reader()
            .query_row(COUNT_ONE_TIME, params![user_id, mode.to_byte()], |row| {
                row.get(0)
            })
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn prekey_counts(&self, user_id: i64) -> Result<Option<[u64; 3]>> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(PREKEY_COUNTS).map_err(backend)?;
        let rows = stmt
            .query_map(params![user_id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(backend)?;
        let mut counts = None;
        for row in rows {
            let (mode, n) = row.map_err(backend)?;
            counts = Some(put_count(counts, mode, n)?);
        }
        Ok(counts)
    }
}
