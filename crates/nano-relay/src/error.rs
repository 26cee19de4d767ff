//! The crate's one error type, and the single place its variants become wire codes.

use nano_proto::ErrorCode;

/// Everything that can go wrong in the relay's building blocks. Messages never contain user
/// content, key material or credentials.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// `relay.toml` is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{0}")]
    ConfigParse(String),
    /// A configuration value outside its range or combination; names the key.
    #[error("{key}: {reason}")]
    ConfigInvalid {
        /// The dotted key, e.g. `performance.message_batch_size`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The username is registered already.
    #[error("username is taken")]
    NameTaken,
    /// The user does not exist.
    #[error("no such user")]
    NotFound,
    /// The stored bundle changed since it was read (a concurrent rotation).
    #[error("the key bundle changed concurrently")]
    Conflict,
    /// The database reported an error.
    #[error("database error: {0}")]
    Storage(String),
    /// The schema is newer than this build understands.
    #[error("database schema version {found} is newer than supported {supported}")]
    SchemaTooNew {
        /// Version in the database.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// The L2 cache failed (callers fall back to the database).
    #[error("L2 cache unavailable: {0}")]
    Cache(String),
}

impl RelayError {
    /// The wire code a peer is told (details stay in the relay's logs).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NameTaken => ErrorCode::NameTaken,
            Self::NotFound => ErrorCode::NotFound,
            // The key that signed the rotation is no longer the current one.
            Self::Conflict => ErrorCode::InvalidKey,
            Self::Storage(_) | Self::SchemaTooNew { .. } | Self::Cache(_) => ErrorCode::Unavailable,
            Self::ConfigParse(_) | Self::ConfigInvalid { .. } | Self::Io { .. } => {
                ErrorCode::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(RelayError::NameTaken.code().as_str(), "name_taken");
        assert_eq!(RelayError::NotFound.code().as_str(), "not_found");
        assert_eq!(RelayError::Conflict.code().as_str(), "invalid_key");
        assert_eq!(
            RelayError::Storage("x".into()).code().as_str(),
            "unavailable"
        );
        assert_eq!(RelayError::Cache("x".into()).code().as_str(), "unavailable");
        assert_eq!(
            RelayError::ConfigParse("x".into()).code().as_str(),
            "internal"
        );
    }
}
