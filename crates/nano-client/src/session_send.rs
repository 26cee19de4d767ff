//! The session a message goes out on (PROTOCOL.md §14.13, "Sending"): the current one with the
//! contact in the chosen mode, else a new one from the contact's prekey bundle, fetched over
//! the connection and verified; `None` (a sealed envelope) when the contact has no prekeys of
//! the mode or its claims are rate limited. One first message per contact at a time; a contact
//! without prekeys is remembered for [`NO_PREKEYS_TTL`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use nano_crypto::{CryptoMode, PublicBundle};
use nano_proto::{ClientFrame, Username};

use crate::client::{BUNDLE_CACHE, Client, NO_PREKEYS_TTL, Shared, preferred_aead};
use crate::error::{ClientError, Result};

impl Shared {
    /// Whether the relay said lately that `peer` has no prekeys of `mode`.
    pub(crate) fn lacks_prekeys(&self, peer: &str, mode: CryptoMode) -> bool {
        let map = self.no_prekeys.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(peer.to_owned(), mode))
            .is_some_and(|at| at.elapsed() < NO_PREKEYS_TTL)
    }

    /// Remembers that `peer` has no prekeys of `mode` (bounded like the bundle cache).
    pub(crate) fn note_no_prekeys(&self, peer: &str, mode: CryptoMode) {
        let mut map = self.no_prekeys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= BUNDLE_CACHE {
            map.retain(|_, at| at.elapsed() < NO_PREKEYS_TTL);
            if map.len() >= BUNDLE_CACHE {
                map.clear();
            }
        }
        map.insert((peer.to_owned(), mode), Instant::now());
    }

    /// The turn to start a session with `peer` (a lock per contact, dropped from the map once
    /// no send holds or waits for it).
    pub(crate) fn initiation(&self, peer: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.initiating.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, turn| Arc::strong_count(turn) > 1);
        Arc::clone(map.entry(peer.to_owned()).or_default())
    }
}

impl Client {
    /// A session message for `recipient`, or `None` when it has published no prekeys of `mode`.
    pub(crate) async fn session_payload(
        &self,
        recipient: &str,
        them: &Arc<PublicBundle>,
        mode: CryptoMode,
        plaintext: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Option<Vec<u8>>> {
        let encrypt = || {
            let (name, pt) = (recipient.to_owned(), plaintext.to_vec());
            self.shared
                .sessions
                .run(true, move |s| s.encrypt(&name, mode, &pt))
        };
        let current = encrypt().await?;
        if current.is_some() {
            return Ok(current);
        }
        let turn = self.shared.initiation(recipient);
        let _turn = turn.lock().await;
        // Another send may have started the session while this one waited.
        let current = encrypt().await?;
        if current.is_some() {
            return Ok(current);
        }
        let ask = ClientFrame::GetPrekeys {
            username: Username::new(recipient)?,
            crypto_mode: mode,
        };
        if self.shared.lacks_prekeys(recipient, mode) {
            return Ok(None);
        }
        let mut pause = Duration::from_millis(100);
        let answer = loop {
            match crate::prekeys::request(&self.shared, ask.clone()).await {
                // Claims are rate limited: this message goes sealed rather than wait.
                Err(ClientError::Relay {
                    code: nano_proto::ErrorCode::RateLimited,
                    ..
                }) => return Ok(None),
                Err(e) if e.is_retryable() && tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => break other,
            }
        };
        let bundle = match answer {
            Ok(nano_proto::RelayFrame::PrekeyBundle {
                username,
                crypto_mode,
                bundle,
            }) if username.as_str() == recipient && crypto_mode == mode => bundle,
            Ok(f) => {
                return Err(ClientError::Protocol(format!(
                    "expected {recipient}'s {mode} prekey bundle, got {}",
                    f.type_name()
                )));
            }
            Err(ClientError::Relay {
                code: nano_proto::ErrorCode::NoPrekeys,
                ..
            }) => {
                self.shared.note_no_prekeys(recipient, mode);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (identity, name, them, pt) = (
            Arc::clone(&self.shared.identity),
            recipient.to_owned(),
            Arc::clone(them),
            plaintext.to_vec(),
        );
        let aead = preferred_aead();
        // A handshake (KEM and signatures) is not light work.
        let handshake = self
            .shared
            .sessions
            .run(false, move |s| {
                s.initiate(&identity, &name, &them, bundle.as_slice(), aead, &pt)
            })
            .await?;
        Ok(Some(handshake))
    }
}
