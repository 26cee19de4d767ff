//! The SQLite prekey store: one writer connection makes every claim atomic.

use nano_crypto::CryptoMode;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, backend};
use crate::storage::Result;
use crate::storage::prekeys::{
    MAX_SIGNED_RECORDS, PREKEY_COUNTS, PrekeyStore, SignedRecord, put_count,
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
        tx.commit().map_err(backend)
    }

    fn signed_prekeys(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>> {
        self.reader()
            .query_row(
                "SELECT record FROM signed_prekeys WHERE user_id = ?1 AND crypto_mode = ?2
                 ORDER BY uploaded_at DESC, prekey_id DESC LIMIT 1",
                params![user_id, mode.to_byte()],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
    }

    fn add_one_time_prekeys(
        &self,
        user_id: i64,
        mode: CryptoMode,
        prekeys: &[(u32, Vec<u8>)],
        replace: bool,
        now_ms: i64,
    ) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        if replace {
            tx.execute(
                "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND crypto_mode = ?2",
                params![user_id, mode.to_byte()],
            )
            .map_err(backend)?;
        }
        let held: i64 = {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO one_time_prekeys
                        (user_id, crypto_mode, prekey_id, record, uploaded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            for (id, record) in prekeys {
                insert
                    .execute(params![user_id, mode.to_byte(), id, record, now_ms])
                    .map_err(backend)?;
            }
            tx.query_row(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND crypto_mode = ?2",
                params![user_id, mode.to_byte()],
                |row| row.get(0),
            )
            .map_err(backend)?
        };
        tx.commit().map_err(backend)?;
        Ok(u64::try_from(held).unwrap_or(0))
    }

    fn claim_one_time_prekey(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>> {
        // One writer connection: the DELETE … RETURNING is the whole claim.
        self.conn()
            .query_row(
                "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND crypto_mode = ?2
                   AND prekey_id = (SELECT MIN(prekey_id) FROM one_time_prekeys
                                     WHERE user_id = ?1 AND crypto_mode = ?2)
                 RETURNING record",
                params![user_id, mode.to_byte()],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
    }

    fn one_time_prekey_count(&self, user_id: i64, mode: CryptoMode) -> Result<u64> {
        let n: i64 = self
            .reader()
            .query_row(
                "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND crypto_mode = ?2",
                params![user_id, mode.to_byte()],
                |row| row.get(0),
            )
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
