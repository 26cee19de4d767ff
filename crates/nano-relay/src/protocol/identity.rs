//! `get_identity` (PROTOCOL.md §14.13, "Receiving"): a user's identity bundle as registered,
//! on the connection, for a receiver that meets a new sender. The same bytes as
//! `GET /v1/users/{name}`, from the same L1/L2 caches, without a new HTTP connection.

use nano_proto::{Bytes, RelayFrame, Username};

use crate::error::RelayError;

use super::Session;

impl Session {
    /// Answers `get_identity` with `identity_bundle` (the canonical name and the registered
    /// bundle bytes), or an `error` without id: `unauthorized` before `auth`, `not_found`,
    /// storage errors.
    pub(super) async fn get_identity(&mut self, username: Username) -> Vec<RelayFrame> {
        match self.identity(&username).await {
            Ok(f) => vec![f],
            Err(e) => vec![self.err(&e, None)],
        }
    }

    async fn identity(&self, username: &Username) -> Result<RelayFrame, RelayError> {
        self.require_user()?;
        let entry = self
            .shared
            .user(username.as_str())
            .await?
            .ok_or(RelayError::NotFound)?;
        Ok(RelayFrame::IdentityBundle {
            username: Username::new(&entry.record.username)?,
            bundle: Bytes(entry.record.bundle.clone()),
        })
    }
}
