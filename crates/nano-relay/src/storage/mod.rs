//! Durable storage: one trait, two backends (embedded SQLite; PostgreSQL in production).
//!
//! The trait is synchronous on purpose: it is driven by the batch writer and by blocking tasks,
//! never from the socket I/O workers, and each call is one short transaction. Message rows carry
//! only what the relay may know: recipient, sender (absent for anonymous sends), mode, time and
//! the opaque payload.

mod pool;
pub mod postgres;
pub mod prekeys;
pub mod schema;
pub mod sqlite;

use std::collections::HashMap;

use nano_crypto::CryptoMode;

pub use crate::error::RelayError;
pub use prekeys::{Claimed, OneTimeRows, PrekeyStore, SignedRecord};

/// Shorthand.
pub type Result<T, E = RelayError> = core::result::Result<T, E>;

/// A crypto mode read back from a database column.
pub(crate) fn mode_from_db(v: i64) -> Result<CryptoMode> {
    u8::try_from(v)
        .ok()
        .and_then(|b| CryptoMode::from_byte(b).ok())
        .ok_or_else(|| RelayError::Corrupt(format!("invalid crypto_mode {v} in database")))
}

/// A fixed-size byte column read back from the database.
pub(crate) fn fixed_from_db<const N: usize>(v: Vec<u8>, what: &str) -> Result<[u8; N]> {
    v.try_into()
        .map_err(|_| RelayError::Corrupt(format!("invalid {what} length in database")))
}

/// The three queries storing a batch needs, run by a backend inside one transaction.
pub(crate) trait BatchQueries {
    /// The sequence number of an already stored (recipient, id), if any.
    fn existing_seq(&mut self, m: &NewMessage) -> Result<Option<i64>>;
    /// Unacked messages in `recipient_id`'s inbox.
    fn pending_count(&mut self, recipient_id: i64) -> Result<u64>;
    /// Inserts `m`, returning its sequence number; `None` (nothing inserted) when its
    /// (recipient, id) is already stored, so the common case costs one statement.
    fn insert(&mut self, m: &NewMessage) -> Result<Option<i64>>;
}

/// Deduplication, inbox quota and insertion for a batch: the same rules on every backend.
pub(crate) fn store_with(
    q: &mut impl BatchQueries,
    batch: &[NewMessage],
    inbox_quota: u64,
) -> Result<Vec<StoreOutcome>> {
    let mut counts: HashMap<i64, u64> = HashMap::new();
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        let pending = match counts.get(&m.recipient_id) {
            Some(n) => *n,
            None => q.pending_count(m.recipient_id)?,
        };
        let full = pending >= inbox_quota;
        let inserted = if full { None } else { q.insert(m)? };
        let outcome = match inserted {
            Some(seq) => StoreOutcome::Stored(seq),
            // A full inbox still answers a resend of what it holds as a duplicate.
            None => match (q.existing_seq(m)?, full) {
                (Some(seq), _) => StoreOutcome::Duplicate(seq),
                (None, true) => StoreOutcome::InboxFull,
                (None, false) => {
                    return Err(RelayError::Internal(
                        "a message neither inserted nor stored".into(),
                    ));
                }
            },
        };
        counts.insert(m.recipient_id, pending + u64::from(inserted.is_some()));
        out.push(outcome);
    }
    Ok(out)
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Row id, used as `recipient_id` / `sender_id`.
    pub id: i64,
    /// The name.
    pub username: String,
    /// Encoded public bundle.
    pub bundle: Vec<u8>,
    /// Its fingerprint.
    pub fingerprint: [u8; 32],
    /// Its minimum mode.
    pub min_mode: CryptoMode,
    /// Rotations so far (0 after registration); a rotation statement names it.
    pub key_version: u64,
}

/// A stored key version read back from the database.
pub(crate) fn version_from_db(v: i64) -> Result<u64> {
    u64::try_from(v)
        .map_err(|_| RelayError::Corrupt(format!("invalid key_version {v} in database")))
}

/// The look-alike key stored with `username` ([`nano_proto::Username::skeleton`]); `None` for
/// a name that is not valid (the relay never stores one).
pub(crate) fn name_key(username: &str) -> Option<String> {
    nano_proto::Username::new(username)
        .ok()
        .map(|u| u.skeleton())
}

/// Fills in `name_key` for rows that have none (those registered before schema version 3), one
/// row at a time through `set(id, key)`, which answers whether the key was free; a key another
/// name holds is left empty and counted (logged once, by count).
pub(crate) fn backfill_name_keys(
    rows: Vec<(i64, String)>,
    mut set: impl FnMut(i64, &str) -> Result<bool>,
) -> Result<()> {
    let mut collisions = 0u64;
    for (id, name) in rows {
        if let Some(key) = name_key(&name)
            && !set(id, &key)?
        {
            collisions += 1;
        }
    }
    if collisions > 0 {
        tracing::warn!(
            collisions,
            "registered names that look like another registered name keep working but are not \
             protected against look-alikes"
        );
    }
    Ok(())
}

/// The error for a unique-constraint violation on `users`, from the constraint's name or the
/// database's message: the fingerprint index means the bundle belongs to another name.
pub(crate) fn users_unique_violation(what: &str) -> RelayError {
    if what.contains("fingerprint") {
        RelayError::KeyTaken
    } else {
        RelayError::NameTaken
    }
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Sender-chosen id; unique per recipient.
    pub message_id: [u8; 16],
    /// Recipient's user id.
    pub recipient_id: i64,
    /// Sender's user id, `None` for anonymous sends.
    pub sender_id: Option<i64>,
    /// The suite.
    pub crypto_mode: CryptoMode,
    /// When the relay accepted it (ms since the epoch).
    pub timestamp_ms: i64,
    /// The opaque payload (`Debug` shows its length only).
    pub payload: nano_proto::Payload,
}

/// What happened to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored with this inbox sequence number.
    Stored(i64),
    /// The same id was stored for this recipient before (sequence of the original).
    Duplicate(i64),
    /// The recipient's inbox is full; not stored.
    InboxFull,
}

/// A key rotation as stored: `username`'s bundle replaced, if its fingerprint is still
/// `expected` and its key version still `version`.
#[derive(Debug, Clone, Copy)]
pub struct Rotation<'a> {
    /// The user.
    pub username: &'a str,
    /// The fingerprint the rotation was signed against.
    pub expected: &'a [u8; 32],
    /// The key version it was signed against (rotations so far).
    pub version: u64,
    /// The new bundle's encoding.
    pub bundle: &'a [u8],
    /// The new bundle's fingerprint.
    pub fingerprint: &'a [u8; 32],
    /// The new bundle's minimum mode.
    pub min_mode: CryptoMode,
    /// When, ms since the Unix epoch.
    pub now_ms: i64,
}

/// What a recipient marks on its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// Acknowledged: out of the inbox. The row stays as a tombstone, its payload erased at
    /// once: (recipient, message id) keeps deduplicating replays until cleanup removes it
    /// [`nano_proto::TOMBSTONE_KEEP_MS`] later (PROTOCOL.md §12, "Replays").
    Ack,
    /// Read.
    Read,
}

impl MarkKind {
    /// The statement that marks one id: parameters now, recipient id, message id.
    pub(crate) fn sql(self, placeholders: [&str; 3]) -> String {
        let [now, recipient, id] = placeholders;
        let (column, erase) = match self {
            // `substr(…, 1, 0)`: an empty BLOB / BYTEA on both backends.
            Self::Ack => ("deleted_at", ", payload = substr(payload, 1, 0)"),
            Self::Read => ("read_at", ""),
        };
        format!(
            "UPDATE messages SET {column} = {now}{erase}
             WHERE recipient_id = {recipient} AND message_id = {id} AND {column} IS NULL"
        )
    }
}

/// One `ack` or `read` frame's ids, for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The recipient's user id (only its own messages can be marked).
    pub recipient_id: i64,
    /// Ack or read.
    pub kind: MarkKind,
    /// The message ids.
    pub ids: Vec<[u8; 16]>,
}

impl Mark {
    /// A mark of `ids`.
    pub fn new(recipient_id: i64, kind: MarkKind, ids: &[[u8; 16]]) -> Self {
        Self {
            recipient_id,
            kind,
            ids: ids.to_vec(),
        }
    }
}

/// A stored, undelivered-or-unacked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Inbox sequence number (increasing).
    pub seq: i64,
    /// Sender-chosen id.
    pub message_id: [u8; 16],
    /// The sender's name, `None` for anonymous sends.
    pub sender: Option<String>,
    /// The suite.
    pub crypto_mode: CryptoMode,
    /// Acceptance time (ms since the epoch).
    pub timestamp_ms: i64,
    /// The opaque payload (`Debug` shows its length only).
    pub payload: nano_proto::Payload,
    /// When the recipient marked it read.
    pub read_at: Option<i64>,
}

/// The storage operations the relay needs (prekeys in their own small trait).
pub trait Storage: PrekeyStore + Send + Sync + std::fmt::Debug + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations; returns the schema version now in place.
    fn migrate(&self) -> Result<u32>;
    /// The schema version in the database (0 before any migration).
    fn schema_version(&self) -> Result<u32>;
    /// The readiness check behind `/ready`: reads the schema version in a query that names
    /// every table and column the relay uses (so a dropped table or column fails it), and runs
    /// a write that changes nothing on a connection that can write (so a read-only or
    /// unwritable database fails it). Returns the schema version. One round trip or two.
    fn probe(&self) -> Result<u32>;
    /// Registers a user; [`RelayError::NameTaken`] if the name exists,
    /// [`RelayError::KeyTaken`] if another name holds the same bundle fingerprint.
    fn create_user(
        &self,
        username: &str,
        bundle: &[u8],
        fingerprint: &[u8; 32],
        min_mode: CryptoMode,
        now_ms: i64,
    ) -> Result<UserRecord>;
    /// Looks a user up by name.
    fn user(&self, username: &str) -> Result<Option<UserRecord>>;
    /// Replaces a user's bundle if its fingerprint is still `expected` and its key version
    /// still `version` (else [`RelayError::Conflict`]), and counts the rotation;
    /// [`RelayError::KeyTaken`] if another name holds the new fingerprint.
    fn replace_bundle(&self, r: &Rotation<'_>) -> Result<()>;
    /// Stores a batch in one transaction, deduplicating by (recipient, id) and enforcing
    /// `inbox_quota` undelivered messages per recipient. Outcomes are in input order.
    fn store_batch(&self, batch: &[NewMessage], inbox_quota: u64) -> Result<Vec<StoreOutcome>>;
    /// Up to `limit` unacked messages for `recipient_id` with `seq > after`, in order.
    fn pending(&self, recipient_id: i64, after: i64, limit: u32) -> Result<Vec<StoredMessage>>;
    /// Number of unacked messages for `recipient_id`.
    fn pending_count(&self, recipient_id: i64) -> Result<u64>;
    /// Applies `marks` in one transaction; how many rows each changed, in order.
    fn mark_batch(&self, marks: &[Mark], now_ms: i64) -> Result<Vec<u64>>;
    /// [`Storage::store_batch`] and [`Storage::mark_batch`] together, in one transaction where
    /// the backend can (SQLite: one commit instead of two, and the pages both touch are written
    /// to the log once). Each part's result; when they share a
    /// transaction, a failure fails both and commits neither. Default: one after the other.
    fn store_and_mark(
        &self,
        batch: &[NewMessage],
        inbox_quota: u64,
        marks: &[Mark],
        now_ms: i64,
    ) -> (Result<Vec<StoreOutcome>>, Result<Vec<u64>>) {
        (
            self.store_batch(batch, inbox_quota),
            self.mark_batch(marks, now_ms),
        )
    }
    /// Acknowledges (removes from the inbox) the given ids; returns how many changed.
    fn ack(&self, recipient_id: i64, ids: &[[u8; 16]], now_ms: i64) -> Result<u64> {
        self.mark_one(Mark::new(recipient_id, MarkKind::Ack, ids), now_ms)
    }
    /// Marks the given ids read; returns how many changed.
    fn mark_read(&self, recipient_id: i64, ids: &[[u8; 16]], now_ms: i64) -> Result<u64> {
        self.mark_one(Mark::new(recipient_id, MarkKind::Read, ids), now_ms)
    }
    /// One mark in its own transaction.
    fn mark_one(&self, mark: Mark, now_ms: i64) -> Result<u64> {
        Ok(self
            .mark_batch(std::slice::from_ref(&mark), now_ms)?
            .first()
            .copied()
            .unwrap_or(0))
    }
    /// Whether anything was written since the last [`Storage::checkpoint`].
    fn wants_checkpoint(&self) -> bool {
        false
    }
    /// Copies committed changes from a write-ahead log into the database, off the writer's
    /// path (SQLite; a no-op where the database does this itself).
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
    /// Deletes up to `limit` rows: tombstones (acked rows) acked before `tombstone_before_ms`,
    /// and unacked messages stored before `expire_before_ms`; returns how many were deleted.
    fn cleanup(&self, expire_before_ms: i64, tombstone_before_ms: i64, limit: u32) -> Result<u64>;
}

/// Opens the backend `url` names (`sqlite://PATH` or `postgres://…`) with `pool_size`
/// connections and applies migrations.
pub fn open(url: &str, pool_size: usize) -> Result<std::sync::Arc<dyn Storage>> {
    let storage: std::sync::Arc<dyn Storage> = if let Some(path) = url.strip_prefix("sqlite://") {
        std::sync::Arc::new(sqlite::SqliteStorage::open_pool(
            std::path::Path::new(path),
            pool_size,
        )?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        std::sync::Arc::new(postgres::PostgresStorage::connect_pool(
            url, None, pool_size,
        )?)
    } else {
        return Err(RelayError::Storage(
            "storage URL must start with sqlite:// or postgres://".into(),
        ));
    };
    storage.migrate()?;
    Ok(storage)
}
