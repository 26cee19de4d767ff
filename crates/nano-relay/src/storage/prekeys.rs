//! The prekey store: users' signed prekeys and one-time prekeys for sessions, as opaque,
//! already-verified records (`nano_crypto::session`), with a claim that hands each one-time
//! prekey out at most once — atomic on SQLite (one writer) and on PostgreSQL, also with several
//! relays sharing one database (`FOR UPDATE SKIP LOCKED`).
//!
//! Rows belong to their user (`ON DELETE CASCADE`): deleting a user deletes its prekeys.

use nano_crypto::CryptoMode;

use super::Result;

/// Most signed-prekeys records kept per user and mode: the current one and the previous ones
/// still inside their grace period.
pub const MAX_SIGNED_RECORDS: u32 = 4;

/// Most one-time prekeys one user holds per mode: an upload past it is refused.
pub const MAX_ONE_TIME_HELD: u64 = 1_000;

/// A signed-prekeys record to store.
#[derive(Debug, Clone, Copy)]
pub struct SignedRecord<'a> {
    /// The owner.
    pub user_id: i64,
    /// The record's mode.
    pub mode: CryptoMode,
    /// The record's id (`SignedPrekeys::id`).
    pub prekey_id: u32,
    /// The encoded record (`SignedPrekeys::to_bytes`), signature already checked.
    pub record: &'a [u8],
    /// Upload time, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// How many earlier records to keep (at most [`MAX_SIGNED_RECORDS`] − 1).
    pub keep_previous: u32,
}

/// Storage of prekeys. Every method is one short transaction.
pub trait PrekeyStore {
    /// Stores a signed-prekeys record (replacing one with the same id) and deletes all but the
    /// newest `keep_previous + 1` records of that user and mode.
    fn put_signed_prekeys(&self, r: &SignedRecord<'_>) -> Result<()>;
    /// The newest signed-prekeys record of a user and mode.
    fn signed_prekeys(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>>;
    /// Adds one-time prekeys `(id, record)` (an id already held keeps its record), after
    /// deleting every one the user holds in `mode` when `replace`, in one transaction; returns
    /// how many the user now holds in `mode`.
    fn add_one_time_prekeys(
        &self,
        user_id: i64,
        mode: CryptoMode,
        prekeys: &[(u32, Vec<u8>)],
        replace: bool,
        now_ms: i64,
    ) -> Result<u64>;
    /// Takes the user's lowest-id one-time prekey of `mode` out of the store and returns it:
    /// each is returned at most once, whatever the concurrency. `None` when none is left.
    fn claim_one_time_prekey(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>>;
    /// How many one-time prekeys of `mode` the user holds.
    fn one_time_prekey_count(&self, user_id: i64, mode: CryptoMode) -> Result<u64>;
    /// One-time prekeys the user holds, indexed by mode byte − 1 (classical, hybrid, quantum);
    /// `None` when the user has no signed prekeys in any mode (it has not started using
    /// sessions).
    fn prekey_counts(&self, user_id: i64) -> Result<Option<[u64; 3]>>;
}

/// The query behind [`PrekeyStore::prekey_counts`], the same on both backends: one row (mode,
/// one-time count) per mode the user has signed prekeys in.
pub(crate) const PREKEY_COUNTS: &str =
    "SELECT s.crypto_mode, (SELECT COUNT(*) FROM one_time_prekeys o
                             WHERE o.user_id = s.user_id AND o.crypto_mode = s.crypto_mode)
       FROM (SELECT DISTINCT user_id, crypto_mode FROM signed_prekeys WHERE user_id = $1) s";

/// `counts` with the count `n` of the mode whose stored byte is `mode`.
///
/// # Errors
/// [`RelayError::Corrupt`](crate::error::RelayError::Corrupt) for a mode byte no mode has.
pub(crate) fn put_count(counts: Option<[u64; 3]>, mode: i64, n: i64) -> Result<[u64; 3]> {
    let mut c = counts.unwrap_or_default();
    let i = usize::try_from(mode - 1)
        .ok()
        .filter(|i| *i < 3)
        .ok_or_else(|| crate::error::RelayError::Corrupt(format!("prekey mode byte {mode}")))?;
    c[i] = u64::try_from(n).unwrap_or(0);
    Ok(c)
}

/// The prekey tables, with one column type per backend (`$int`, `$mode`, `$bytes`): both have
/// the same columns.
macro_rules! prekey_tables {
    ($int:literal, $mode:literal, $bytes:literal) => {
        concat!(
            "CREATE TABLE signed_prekeys (",
            $crate::storage::prekeys::prekey_columns!($int, $mode, $bytes),
            ");\n    CREATE TABLE one_time_prekeys (",
            $crate::storage::prekeys::prekey_columns!($int, $mode, $bytes),
            ");"
        )
    };
}

/// The columns of a prekey table.
macro_rules! prekey_columns {
    ($int:literal, $mode:literal, $bytes:literal) => {
        concat!(
            "
        user_id ",
            $int,
            " NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        crypto_mode ",
            $mode,
            " NOT NULL,
        prekey_id BIGINT NOT NULL,
        record ",
            $bytes,
            " NOT NULL,
        uploaded_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, crypto_mode, prekey_id)
    "
        )
    };
}
pub(crate) use {prekey_columns, prekey_tables};
