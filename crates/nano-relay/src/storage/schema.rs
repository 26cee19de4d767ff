//! Versioned schema migrations, one list per backend, applied in order inside a transaction
//! each and recorded in `schema_migrations`. Both backends have the same tables and the
//! performance guide's four indexes (recipient+timestamp, sender+timestamp, partial unread,
//! partial cleanup), plus the inbox-paging and acked-cleanup indexes the relay's queries use.
//! Version 4 adds the prekey tables (`prekeys.rs`); version 5 stores payloads as bytes; version 6
//! adds batches of one-time prekeys (`prekeys.rs`).

/// The message indexes, the same on both backends: the guide's four (recipient+timestamp,
/// sender+timestamp, partial unread, partial cleanup) and the relay's inbox-paging and
/// acked-cleanup indexes.
macro_rules! message_indexes {
    () => {
        "
    CREATE INDEX idx_messages_recipient_timestamp ON messages (recipient_id, timestamp DESC);
    CREATE INDEX idx_messages_sender_timestamp ON messages (sender_id, timestamp DESC);
    CREATE INDEX idx_messages_unread ON messages (recipient_id, timestamp DESC)
        WHERE read_at IS NULL;
    CREATE INDEX idx_messages_cleanup ON messages (timestamp) WHERE deleted_at IS NULL;
    CREATE INDEX idx_messages_inbox ON messages (recipient_id, seq) WHERE deleted_at IS NULL;
    CREATE INDEX idx_messages_acked ON messages (deleted_at) WHERE deleted_at IS NOT NULL;"
    };
}

/// SQLite migrations: (version, SQL).
pub const SQLITE: &[(u32, &str)] = &[
    (
        1,
        concat!(
            "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        bundle BLOB NOT NULL,
        fingerprint BLOB NOT NULL,
        min_mode INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id BLOB NOT NULL,
        recipient_id INTEGER NOT NULL REFERENCES users (id),
        sender_id INTEGER REFERENCES users (id),
        crypto_mode INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        payload TEXT NOT NULL,
        read_at INTEGER,
        deleted_at INTEGER,
        UNIQUE (recipient_id, message_id)
    );
    ",
            message_indexes!()
        ),
    ),
    (2, MIGRATION_2),
    (3, MIGRATION_3),
    (
        4,
        super::prekeys::prekey_tables!("INTEGER", "INTEGER", "BLOB"),
    ),
    (5, SQLITE_MIGRATION_5),
    (
        6,
        super::prekeys::prekey_batches!("INTEGER", "INTEGER", "BLOB"),
    ),
];

/// SQLite version 5: payloads become bytes. A text row holds what a JSON frame carried, so it
/// becomes what that JSON string means (`Payload::from_json_text`: the bytes of standard
/// base64, else the UTF-8 text), through `nano_payload_bytes`, a function the relay registers
/// on its connection before migrating (SQLite has no base64 of its own).
const SQLITE_MIGRATION_5: &str = "
    ALTER TABLE messages RENAME COLUMN payload TO payload_text;
    ALTER TABLE messages ADD COLUMN payload BLOB NOT NULL DEFAULT x'';
    UPDATE messages SET payload = nano_payload_bytes(payload_text);
    ALTER TABLE messages DROP COLUMN payload_text;";

/// PostgreSQL version 5: payloads become bytes, by the same rule as SQLite's: text that is
/// canonical standard padded base64 (what the relay's decoder accepts) becomes its bytes, any
/// other text its UTF-8 bytes.
const POSTGRES_MIGRATION_5: &str = r"
    ALTER TABLE messages ALTER COLUMN payload TYPE BYTEA USING (
        CASE WHEN payload ~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$'
             THEN decode(payload, 'base64')
             ELSE convert_to(payload, 'UTF8') END);";

/// Version 2, the same on both backends: rotations are counted (a rotation statement names the
/// count, so it is valid once), and one bundle fingerprint belongs to one name.
const MIGRATION_2: &str = "
    ALTER TABLE users ADD COLUMN key_version BIGINT NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX idx_users_fingerprint ON users (fingerprint);";

/// Version 3, the same on both backends: names are case-insensitive and look-alikes are one
/// name. Existing names become lowercase where that collides with no other (of a group that
/// differs only by case, the oldest); `name_key` (the name's UTS #39 skeleton,
/// `Username::skeleton`) is unique, and filled in for existing rows by the relay after
/// migrating (`backfill_name_keys`), where it collides with no other.
const MIGRATION_3: &str = "
    UPDATE users SET username = lower(username)
     WHERE username <> lower(username)
       AND NOT EXISTS (SELECT 1 FROM users AS o WHERE o.username = lower(users.username))
       AND id = (SELECT MIN(g.id) FROM users AS g WHERE lower(g.username) = lower(users.username));
    ALTER TABLE users ADD COLUMN name_key TEXT;
    CREATE UNIQUE INDEX idx_users_name_key ON users (name_key);";

/// PostgreSQL migrations: (version, SQL).
pub const POSTGRES: &[(u32, &str)] = &[
    (
        1,
        concat!(
            "CREATE TABLE users (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        bundle BYTEA NOT NULL,
        fingerprint BYTEA NOT NULL,
        min_mode SMALLINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE messages (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id BYTEA NOT NULL,
        recipient_id BIGINT NOT NULL REFERENCES users (id),
        sender_id BIGINT REFERENCES users (id),
        crypto_mode SMALLINT NOT NULL,
        timestamp BIGINT NOT NULL,
        payload TEXT NOT NULL,
        read_at BIGINT,
        deleted_at BIGINT,
        UNIQUE (recipient_id, message_id)
    );
    ",
            message_indexes!()
        ),
    ),
    (2, MIGRATION_2),
    (3, MIGRATION_3),
    (
        4,
        super::prekeys::prekey_tables!("BIGINT", "SMALLINT", "BYTEA"),
    ),
    (5, POSTGRES_MIGRATION_5),
    (
        6,
        super::prekeys::prekey_batches!("BIGINT", "SMALLINT", "BYTEA"),
    ),
];

/// The highest schema version this build knows.
pub fn latest(migrations: &[(u32, &str)]) -> u32 {
    migrations.last().map_or(0, |(v, _)| *v)
}

/// The readiness query, the same on both backends: the schema version, from a statement that
/// also names every table and column the relay reads or writes (no rows are read).
pub const PROBE: &str =
    "SELECT CAST((SELECT COALESCE(MAX(version), 0) FROM schema_migrations) AS BIGINT) AS version,
        (SELECT COUNT(*) FROM (SELECT id, username, name_key, bundle, fingerprint, min_mode,
            key_version, created_at, updated_at FROM users LIMIT 0) u) AS users,
        (SELECT COUNT(*) FROM (SELECT seq, message_id, recipient_id, sender_id, crypto_mode,
            timestamp, payload, read_at, deleted_at FROM messages LIMIT 0) m) AS messages,
        (SELECT COUNT(*) FROM (SELECT user_id, crypto_mode, prekey_id, record, uploaded_at
            FROM signed_prekeys LIMIT 0) s) AS signed_prekeys,
        (SELECT COUNT(*) FROM (SELECT user_id, crypto_mode, prekey_id, record, uploaded_at,
            batch_id FROM one_time_prekeys LIMIT 0) o) AS one_time_prekeys,
        (SELECT COUNT(*) FROM (SELECT user_id, crypto_mode, batch_id, signed_id, record,
            uploaded_at FROM one_time_batches LIMIT 0) b) AS one_time_batches";

/// The readiness write: an update that matches no row (sequence numbers are positive), which
/// still needs a writable table.
pub const PROBE_WRITE: &str = "UPDATE messages SET read_at = read_at WHERE seq < 0";
