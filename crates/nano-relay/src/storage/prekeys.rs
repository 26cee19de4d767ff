//! The prekey store: users' signed prekeys and one-time prekeys for sessions, as opaque,
//! already-verified records (`nano_crypto::session`), with a claim that hands each one-time
//! prekey out at most once — atomic on SQLite (one writer) and on PostgreSQL, also with several
//! relays sharing one database (`FOR UPDATE SKIP LOCKED`).
//!
//! One-time prekeys arrive in batches: a `one_time_batches` row keeps the signed-prekeys record
//! that certifies a batch (its Merkle root), and each `one_time_prekeys` row the served form of
//! one prekey (the prekey, its index and inclusion proof) and its batch. A claim returns both.
//! A batch whose record id is no longer among the user's kept signed-prekeys records goes with
//! its prekeys (its owner no longer holds that record's secrets); an empty batch is dropped at
//! the next upload.
//!
//! Rows belong to their user (`ON DELETE CASCADE`): deleting a user deletes its prekeys.

use nano_crypto::CryptoMode;

use super::Result;

/// Most signed-prekeys records kept per user and mode: the current one and the previous ones
/// still inside their grace period.
pub const MAX_SIGNED_RECORDS: u32 = 4;

/// Most one-time prekeys one user holds per mode: an upload past it is refused.
pub const MAX_ONE_TIME_HELD: u64 = 1_000;

/// Most batches of one-time prekeys one user holds per mode (counting those with prekeys
/// left): an upload past it is refused.
pub const MAX_ONE_TIME_BATCHES: u64 = 100;

/// A batch of one-time prekeys to store.
#[derive(Debug, Clone, Copy)]
pub struct OneTimeRows<'a> {
    /// The batch's id: its first prekey id.
    pub batch_id: u32,
    /// The id of the signed-prekeys record that certifies it.
    pub signed_id: u32,
    /// That record (`SignedPrekeys::to_bytes`), its signature and root already checked.
    pub record: &'a [u8],
    /// `(prekey id, OneTimeInclusion::to_bytes)`, one per prekey.
    pub prekeys: &'a [(u32, Vec<u8>)],
}

/// A claimed one-time prekey: the record that certifies its batch, and its served form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The signed-prekeys record of its batch.
    pub record: Vec<u8>,
    /// `OneTimeInclusion::to_bytes`.
    pub one_time: Vec<u8>,
}

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
    /// newest `keep_previous + 1` records of that user and mode, with the one-time batches (and
    /// their prekeys) certified by a record deleted.
    fn put_signed_prekeys(&self, r: &SignedRecord<'_>) -> Result<()>;
    /// The newest signed-prekeys record of a user and mode.
    fn signed_prekeys(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Vec<u8>>>;
    /// Adds a batch of one-time prekeys (an id already held keeps its row), after deleting
    /// every one the user holds in `mode` when `replace`, in one transaction; returns how many
    /// the user now holds in `mode`.
    ///
    /// # Errors
    /// [`RelayError::Proto`](crate::error::RelayError::Proto) (`invalid_field`) when the user
    /// would hold more than [`MAX_ONE_TIME_BATCHES`] batches, or holds another batch with this
    /// batch id; nothing is stored then.
    fn add_one_time_prekeys(
        &self,
        user_id: i64,
        mode: CryptoMode,
        batch: Option<&OneTimeRows<'_>>,
        replace: bool,
        now_ms: i64,
    ) -> Result<u64>;
    /// Takes the user's oldest one-time prekey of `mode` (first uploaded, then lowest id) out
    /// of the store and returns it with its batch's record: each is returned at most once,
    /// whatever the concurrency. `None` when none is left. Oldest first, so the batches of a
    /// record about to be rotated out are used before they are dropped.
    fn claim_one_time_prekey(&self, user_id: i64, mode: CryptoMode) -> Result<Option<Claimed>>;
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

/// Deletes the one-time prekeys of batches whose signed-prekeys record is no longer kept (run
/// after trimming the records), then those batches; `$1` user, `$2` mode.
pub(crate) const DROP_UNCERTIFIED: [&str; 2] = [
    "DELETE FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2
       AND batch_id IN (SELECT batch_id FROM one_time_batches b
                         WHERE b.user_id = $1 AND b.crypto_mode = $2
                           AND b.signed_id NOT IN (SELECT prekey_id FROM signed_prekeys
                                                    WHERE user_id = $1 AND crypto_mode = $2))",
    "DELETE FROM one_time_batches WHERE user_id = $1 AND crypto_mode = $2
       AND signed_id NOT IN (SELECT prekey_id FROM signed_prekeys
                              WHERE user_id = $1 AND crypto_mode = $2)",
];

/// Deletes every one-time prekey and batch of a user and mode (`replace_one_time`); `$1` user,
/// `$2` mode.
pub(crate) const DROP_ALL_ONE_TIME: [&str; 2] = [
    "DELETE FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2",
    "DELETE FROM one_time_batches WHERE user_id = $1 AND crypto_mode = $2",
];

/// Deletes a user's batches of a mode with no prekey left, then counts the rest; `$1` user,
/// `$2` mode.
pub(crate) const DROP_EMPTY_BATCHES: &str =
    "DELETE FROM one_time_batches WHERE user_id = $1 AND crypto_mode = $2
       AND NOT EXISTS (SELECT 1 FROM one_time_prekeys o WHERE o.user_id = $1
                         AND o.crypto_mode = $2 AND o.batch_id = one_time_batches.batch_id)";

/// How many batches a user holds in a mode; `$1` user, `$2` mode.
pub(crate) const COUNT_BATCHES: &str =
    "SELECT COUNT(*) FROM one_time_batches WHERE user_id = $1 AND crypto_mode = $2";

/// Whether the signed-prekeys record `$3` of user `$1` in mode `$2` is still kept (a batch is
/// only stored under a kept record: one trimmed meanwhile would leave the batch uncertified).
/// PostgreSQL appends `FOR SHARE`, so a concurrent trim waits for the upload and then drops
/// the batch with the record.
pub(crate) const SIGNED_KEPT: &str = "SELECT 1 FROM signed_prekeys
     WHERE user_id = $1 AND crypto_mode = $2 AND prekey_id = $3";

/// Stores a batch's record unless the batch id is held; `$1` user, `$2` mode, `$3` batch id,
/// `$4` signed id, `$5` record, `$6` time.
pub(crate) const INSERT_BATCH: &str = "INSERT INTO one_time_batches
        (user_id, crypto_mode, batch_id, signed_id, record, uploaded_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

/// The record of a batch; `$1` user, `$2` mode, `$3` batch id.
pub(crate) const BATCH_RECORD: &str = "SELECT record FROM one_time_batches
     WHERE user_id = $1 AND crypto_mode = $2 AND batch_id = $3";

/// Stores a one-time prekey unless its id is held; `$1` user, `$2` mode, `$3` id, `$4` served
/// form, `$5` time, `$6` batch id.
pub(crate) const INSERT_ONE_TIME: &str = "INSERT INTO one_time_prekeys
        (user_id, crypto_mode, prekey_id, record, uploaded_at, batch_id)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

/// How many one-time prekeys a user holds in a mode; `$1` user, `$2` mode.
pub(crate) const COUNT_ONE_TIME: &str =
    "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = $1 AND crypto_mode = $2";

/// The refusal of a batch past [`MAX_ONE_TIME_BATCHES`] or of a batch id already held by
/// another batch.
pub(crate) fn batch_refused(reason: String) -> crate::error::RelayError {
    crate::error::RelayError::Proto(nano_proto::ProtoError::InvalidField {
        field: "one_time_prekeys",
        reason,
    })
}

/// Checks, inside an upload's transaction, what the stored batch row says after the insert:
/// `held_record` is the record stored under the batch id, `batches` how many the user holds.
pub(crate) fn check_batch(batch: &OneTimeRows<'_>, held_record: &[u8], batches: i64) -> Result<()> {
    if held_record != batch.record {
        return Err(batch_refused(format!(
            "batch id {} is held by another batch of one-time prekeys",
            batch.batch_id
        )));
    }
    if u64::try_from(batches).unwrap_or(u64::MAX) > MAX_ONE_TIME_BATCHES {
        return Err(batch_refused(format!(
            "a user holds at most {MAX_ONE_TIME_BATCHES} batches of one-time prekeys per mode"
        )));
    }
    Ok(())
}

/// Refuses a batch whose signed-prekeys record is not kept (`kept` false): a newer upload
/// trimmed it between this upload's two steps.
pub(crate) fn check_kept(batch: &OneTimeRows<'_>, kept: bool) -> Result<()> {
    if kept {
        return Ok(());
    }
    Err(batch_refused(format!(
        "signed prekeys {} are no longer kept; upload the batch under the current ones",
        batch.signed_id
    )))
}

/// A claimed prekey whose batch row is missing: the store is damaged (the relay never deletes a
/// batch with prekeys left).
pub(crate) fn missing_batch(batch_id: i64) -> crate::error::RelayError {
    crate::error::RelayError::Corrupt(format!("one-time prekey batch {batch_id} is missing"))
}

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

/// Version 6 of the prekey tables, with one column type per backend (`$int`, `$mode`,
/// `$bytes`): batches of one-time prekeys and the batch of each. Prekeys stored before it are in
/// the formats of prekey bundle version 1, which no client reads any more: they are deleted, and
/// each owner uploads new ones at its next login (`auth_ok` shows none).
macro_rules! prekey_batches {
    ($int:literal, $mode:literal, $bytes:literal) => {
        concat!(
            "DELETE FROM one_time_prekeys;
    DELETE FROM signed_prekeys;
    ALTER TABLE one_time_prekeys ADD COLUMN batch_id BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE one_time_batches (",
            $crate::storage::prekeys::owner_columns!($int, $mode),
            "
        batch_id BIGINT NOT NULL,
        signed_id BIGINT NOT NULL,
        record ",
            $bytes,
            " NOT NULL,
        uploaded_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, crypto_mode, batch_id)
    );"
        )
    };
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

/// The owner columns every prekey table starts with: the user (its rows go with it) and the
/// mode.
macro_rules! owner_columns {
    ($int:literal, $mode:literal) => {
        concat!(
            "
        user_id ",
            $int,
            " NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        crypto_mode ",
            $mode,
            " NOT NULL,"
        )
    };
}

/// The columns of a prekey table.
macro_rules! prekey_columns {
    ($int:literal, $mode:literal, $bytes:literal) => {
        concat!(
            $crate::storage::prekeys::owner_columns!($int, $mode),
            "
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
pub(crate) use {owner_columns, prekey_batches, prekey_columns, prekey_tables};
