//! The PostgreSQL prekey store: a claim locks the row it takes and skips rows other claims
//! hold (`FOR UPDATE SKIP LOCKED`), so relays sharing the database never hand one out twice.

use nano_crypto::CryptoMode;

use super::PostgresStorage;
use super::pool::{backend, col, commit};
use crate::storage::Result;
use crate::storage::prekeys::{
    BATCH_RECORD, COUNT_BATCHES, COUNT_ONE_TIME, Claimed, DROP_ALL_ONE_TIME, DROP_EMPTY_BATCHES,
    DROP_UNCERTIFIED, INSERT_BATCH, INSERT_ONE_TIME, MAX_SIGNED_RECORDS, OneTimeRows,
    PREKEY_COUNTS, PrekeyStore, SIGNED_KEPT, SignedRecord, check_batch, check_kept, missing_batch,
    put_count,
};

/// Locks `user_id`'s row until `tx` ends: one prekey write of a user at a time, through every
/// relay, so the counts a write checks or trims by (the batch cap, the signed records kept) are
/// never raced past. `NO KEY UPDATE` neither waits for nor blocks the key-share locks that
/// inserts of the user's messages take on the row.
fn lock_user(tx: &mut postgres::Transaction<'_>, user_id: i64) -> Result<()> {
    tx.execute(
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&user_id],
    )
    .map_err(backend)?;
    Ok(())
}

/// A crypto mode as its SMALLINT column value.
fn db_mode(m: CryptoMode) -> i16 {
    i16::from(m.to_byte())
}

impl PrekeyStore for PostgresStorage {
    fn put_signed_prekeys(&self, r: &SignedRecord<'_>) -> Result<()> {
        let keep = i64::from(r.keep_previous.min(MAX_SIGNED_RECORDS - 1) + 1);
        self.with(|c, _| {
            let mut tx = c.transaction().map_err(backend)?;
            lock_user(&mut tx, r.user_id)?;
            let m = db_mode(r.mode);
            tx.execute(
                "INSERT INTO signed_prekeys (user_id, crypto_mode, prekey_id, record, uploaded_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, crypto_mode, prekey_id)
                 DO UPDATE SET record = EXCLUDED.record, uploaded_at = EXCLUDED.uploaded_at",
                &[
                    &r.user_id,
                    &m,
                    &i64::from(r.prekey_id),
                    &r.record,
                    &r.now_ms,
                ],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM signed_prekeys WHERE user_id = $1 AND crypto_mode = $2
                   AND prekey_id NOT IN (SELECT prekey_id FROM signed_prekeys
                     WHERE user_id = $1 AND crypto_mode = $2
                     ORDER BY uploaded_at DESC, prekey_id DESC LIMIT $3)",
                &[&r.user_id, &m, &keep],
            )
            .map_err(backend)?;
            for sql in DROP_UNCERTIFIED {
                tx.execute(sql, &[&r.user_id, &m]).map_err(backend)?;
            }
            commit(tx)
        })
    }

    fn signed_prekeys(&self, user_id: i64, m: CryptoMode) -> Result<Option<Vec<u8>>> {
        self.with(|c, _| {
            c.query_opt(
                "SELECT record FROM signed_prekeys WHERE user_id = $1 AND crypto_mode = $2
                 ORDER BY uploaded_at DESC, prekey_id DESC LIMIT 1",
                &[&user_id, &db_mode(m)],
            )
            .map_err(backend)?
            .map(|row| col::<Vec<u8>>(&row, 0))
            .transpose()
        })
    }

    fn add_one_time_prekeys(
        &self,
        user_id: i64,
        mode: CryptoMode,
        batch: Option<&OneTimeRows<'_>>,
        replace: bool,
        now_ms: i64,
    ) -> Result<u64> {
        let m = db_mode(mode);
        self.with(|c, _| {
            let mut tx = c.transaction().map_err(backend)?;
            lock_user(&mut tx, user_id)?;
            if replace {
                for sql in DROP_ALL_ONE_TIME {
                    tx.execute(sql, &[&user_id, &m]).map_err(backend)?;
                }
            }
            if let Some(b) = batch {
                let batch_id = i64::from(b.batch_id);
                let kept = tx
                    .query_opt(
                        &format!("{SIGNED_KEPT} FOR SHARE"),
                        &[&user_id, &m, &i64::from(b.signed_id)],
                    )
                    .map_err(backend)?;
                check_kept(b, kept.is_some())?;
                tx.execute(DROP_EMPTY_BATCHES, &[&user_id, &m])
                    .map_err(backend)?;
                tx.execute(
                    INSERT_BATCH,
                    &[
                        &user_id,
                        &m,
                        &batch_id,
                        &i64::from(b.signed_id),
                        &b.record,
                        &now_ms,
                    ],
                )
                .map_err(backend)?;
                let held = tx
                    .query_one(BATCH_RECORD, &[&user_id, &m, &batch_id])
                    .map_err(backend)?;
                let batches = tx
                    .query_one(COUNT_BATCHES, &[&user_id, &m])
                    .map_err(backend)?;
                // Dropping `tx` unfinished rolls the upload back.
                check_batch(b, &col::<Vec<u8>>(&held, 0)?, col::<i64>(&batches, 0)?)?;
                let insert = tx.prepare(INSERT_ONE_TIME).map_err(backend)?;
                for (id, record) in b.prekeys {
                    tx.execute(
                        &insert,
                        &[&user_id, &m, &i64::from(*id), record, &now_ms, &batch_id],
                    )
                    .map_err(backend)?;
                }
            }
            let row = tx
                .query_one(COUNT_ONE_TIME, &[&user_id, &m])
                .map_err(backend)?;
            let held = col::<i64>(&row, 0)?;
            commit(tx)?;
            Ok(u64::try_from(held).unwrap_or(0))
        })
    }

    fn claim_one_time_prekey(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Claimed>> {
        // The row is locked by the claim that picks it; a concurrent claim (this relay or
        // another) skips it, so no prekey is ever returned twice. Its batch's record is read in
        // the same transaction, before the batch could be found empty and dropped.
        let m = db_mode(mode);
        self.with(|c, _| {
            let mut tx = c.transaction().map_err(backend)?;
            let Some(row) = tx
                .query_opt(
                    "DELETE FROM one_time_prekeys WHERE (user_id, crypto_mode, prekey_id) =
                       (SELECT user_id, crypto_mode, prekey_id FROM one_time_prekeys
                         WHERE user_id = $1 AND crypto_mode = $2
                         ORDER BY uploaded_at, prekey_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING record, batch_id",
                    &[&user_id, &m],
                )
                .map_err(backend)?
            else {
                return Ok(None);
            };
            let (one_time, batch_id) = (col::<Vec<u8>>(&row, 0)?, col::<i64>(&row, 1)?);
            let record = tx
                .query_opt(BATCH_RECORD, &[&user_id, &m, &batch_id])
                .map_err(backend)?
                .map(|r| col::<Vec<u8>>(&r, 0))
                .transpose()?;
            commit(tx)?;
            Ok(Some(Claimed {
                record: record.ok_or_else(|| missing_batch(batch_id))?,
                one_time,
            }))
        })
    }

    fn one_time_prekey_count(&self, user_id: i64, m: CryptoMode) -> Result<u64> {
        self.with(|c, _| {
            let row = c
                .query_one(COUNT_ONE_TIME, &[&user_id, &db_mode(m)])
                .map_err(backend)?;
            Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
        })
    }

    fn prekey_counts(&self, user_id: i64) -> Result<Option<[u64; 3]>> {
        self.with(|c, _| {
            let mut counts = None;
            for row in c.query(PREKEY_COUNTS, &[&user_id]).map_err(backend)? {
                let mode = i64::from(col::<i16>(&row, 0)?);
                counts = Some(put_count(counts, mode, col::<i64>(&row, 1)?)?);
            }
            Ok(counts)
        })
    }
}
