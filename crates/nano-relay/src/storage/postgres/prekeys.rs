//! The PostgreSQL prekey store: a claim locks the row it takes and skips rows other claims
//! hold (`FOR UPDATE SKIP LOCKED`), so relays sharing the database never hand one out twice.

use nano_crypto::CryptoMode;

use super::PostgresStorage;
use super::pool::{backend, col, commit};
use crate::storage::Result;
use crate::storage::prekeys::{
    MAX_SIGNED_RECORDS, PREKEY_COUNTS, PrekeyStore, SignedRecord, put_count,
};

/// A crypto mode as its SMALLINT column value.
fn db_mode(m: CryptoMode) -> i16 {
    i16::from(m.to_byte())
}

impl PrekeyStore for PostgresStorage {
    fn put_signed_prekeys(&self, r: &SignedRecord<'_>) -> Result<()> {
        let keep = i64::from(r.keep_previous.min(MAX_SIGNED_RECORDS - 1) + 1);
        self.with(|c, _| {
            let mut tx = c.transaction().map_err(backend)?;
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
        m: CryptoMode,
        prekeys: &[(u32, Vec<u8>)],
        replace: bool,
        now_ms: i64,
    ) -> Result<u64> {
        self.with(|c, _| {
            let mut tx = c.transaction().map_err(backend)?;
            if replace {
                tx.execute(
                    "DELETE FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2",
                    &[&user_id, &db_mode(m)],
                )
                .map_err(backend)?;
            }
            let insert = tx
                .prepare(
                    "INSERT INTO one_time_prekeys
                        (user_id, crypto_mode, prekey_id, record, uploaded_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .map_err(backend)?;
            for (id, record) in prekeys {
                tx.execute(
                    &insert,
                    &[&user_id, &db_mode(m), &i64::from(*id), record, &now_ms],
                )
                .map_err(backend)?;
            }
            let row = tx
                .query_one(
                    "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2",
                    &[&user_id, &db_mode(m)],
                )
                .map_err(backend)?;
            let held = col::<i64>(&row, 0)?;
            commit(tx)?;
            Ok(u64::try_from(held).unwrap_or(0))
        })
    }

    fn claim_one_time_prekey(&self, user_id: i64, m: CryptoMode) -> Result<Option<Vec<u8>>> {
        // The row is locked by the claim that picks it; a concurrent claim (this relay or
        // another) skips it, so no record is ever returned twice.
        self.with(|c, _| {
            c.query_opt(
                "DELETE FROM one_time_prekeys WHERE (user_id, crypto_mode, prekey_id) =
                   (SELECT user_id, crypto_mode, prekey_id FROM one_time_prekeys
                     WHERE user_id = $1 AND crypto_mode = $2
                     ORDER BY prekey_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING record",
                &[&user_id, &db_mode(m)],
            )
            .map_err(backend)?
            .map(|row| col::<Vec<u8>>(&row, 0))
            .transpose()
        })
    }

    fn one_time_prekey_count(&self, user_id: i64, m: CryptoMode) -> Result<u64> {
        self.with(|c, _| {
            let row = c
                .query_one(
                    "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2",
                    &[&user_id, &db_mode(m)],
                )
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
