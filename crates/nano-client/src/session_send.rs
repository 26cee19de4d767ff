//! The session a message goes out on (PROTOCOL.md §14.13, "Sending"): the current one with the
//! contact in the chosen mode, else a new one from the contact's prekey bundle, fetched over
//! the connection and verified; `None` (a sealed envelope) when the contact has no prekeys of
//! the mode or its claims are rate limited. One first message per contact at a time; a contact
//! without prekeys is remembered for [`NO_PREKEYS_TTL`]. When the mode is known before the
//! contact's identity bundle ([`crate::ModeChoice::Explicit`]), a first contact claims the
//! prekey bundle while the identity bundle is fetched ([`Client::first_contact`]).

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

/// A first contact's turn and prekey bundle, claimed while the contact's identity bundle is
/// fetched: one round trip to the relay instead of two before the handshake.
pub(crate) struct FirstContact {
    /// The contact's initiation turn, held until the new session is saved.
    turn: tokio::sync::OwnedMutexGuard<()>,
    /// The prekey bundle (PROTOCOL.md §14.2 bytes); `None` when the contact has no prekeys of
    /// the mode or claims are rate limited (the message goes sealed).
    bundle: Option<Vec<u8>>,
}

impl Client {
    /// Whether a session with `peer` in `mode` is held (a hint: the send checks again under
    /// the store's lock).
    async fn has_session(&self, peer: &str, mode: CryptoMode) -> Result<bool> {
        let peer = peer.to_owned();
        self.shared
            .sessions
            .run(true, move |s| {
                let mut held = false;
                s.store().update_sessions(&peer, mode, &mut |records| {
                    held = !records.is_empty();
                    Ok(false)
                })?;
                Ok(held)
            })
            .await
    }

    /// For a message to `recipient` in `mode`: when no session is held, the initiation turn
    /// and the contact's prekey bundle, claimed now (while the caller fetches the contact's
    /// identity); `None` when a session is held, and the message rides it.
    ///
    /// # Errors
    /// As [`Client::claim_prekeys`]; the store's.
    pub(crate) async fn first_contact(
        &self,
        recipient: &str,
        mode: CryptoMode,
        deadline: tokio::time::Instant,
    ) -> Result<Option<FirstContact>> {
        if self.has_session(recipient, mode).await? {
            return Ok(None);
        }
        let turn = self.shared.initiation(recipient).lock_owned().await;
        // Another send may have started the session while this one waited.
        if self.has_session(recipient, mode).await? {
            return Ok(None);
        }
        let bundle = self.claim_prekeys(recipient, mode, deadline).await?;
        Ok(Some(FirstContact { turn, bundle }))
    }

    /// A session message for `recipient`, or `None` when it has published no prekeys of `mode`.
    /// `first`, when given, is the turn and bundle [`Client::first_contact`] claimed.
    pub(crate) async fn session_payload(
        &self,
        recipient: &str,
        them: &Arc<PublicBundle>,
        mode: CryptoMode,
        plaintext: &[u8],
        deadline: tokio::time::Instant,
        first: Option<FirstContact>,
    ) -> Result<Option<Vec<u8>>> {
        let encrypt = || {
            let (name, pt) = (recipient.to_owned(), plaintext.to_vec());
            self.shared
                .sessions
                .run(true, move |s| s.encrypt(&name, mode, &pt))
        };
        // The contact's turn is held until the new session is saved.
        let (_turn, bundle) = match first {
            Some(FirstContact { turn, bundle }) => (turn, bundle),
            None => {
                let current = encrypt().await?;
                if current.is_some() {
                    return Ok(current);
                }
                let turn = self.shared.initiation(recipient).lock_owned().await;
                // Another send may have started the session while this one waited.
                let current = encrypt().await?;
                if current.is_some() {
                    return Ok(current);
                }
                (turn, self.claim_prekeys(recipient, mode, deadline).await?)
            }
        };
        match bundle {
            Some(bundle) => self
                .initiate(recipient, them, bundle, plaintext)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// `recipient`'s prekey bundle of `mode` from the relay (one one-time prekey claimed, if
    /// any is left); `None` when it has none of the mode or claims are rate limited (a sealed
    /// envelope goes instead). Retries retryable failures until `deadline`.
    ///
    /// # Errors
    /// The relay's refusal (`not_found`, `mode_not_allowed`, …), a lost connection, a frame
    /// that is not the bundle asked for.
    async fn claim_prekeys(
        &self,
        recipient: &str,
        mode: CryptoMode,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Vec<u8>>> {
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
        match answer {
            Ok(nano_proto::RelayFrame::PrekeyBundle {
                username,
                crypto_mode,
                bundle,
            }) if username.as_str() == recipient && crypto_mode == mode => Ok(Some(bundle.0)),
            Ok(f) => Err(ClientError::Protocol(format!(
                "expected {recipient}'s {mode} prekey bundle, got {}",
                f.type_name()
            ))),
            Err(ClientError::Relay {
                code: nano_proto::ErrorCode::NoPrekeys,
                ..
            }) => {
                self.shared.note_no_prekeys(recipient, mode);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The handshake carrying `plaintext` on a new session from `bundle` (or, when a session
    /// appeared meanwhile, a message on it), saved before it is returned.
    async fn initiate(
        &self,
        recipient: &str,
        them: &Arc<PublicBundle>,
        bundle: Vec<u8>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let (identity, name, them, pt) = (
            Arc::clone(&self.shared.identity),
            recipient.to_owned(),
            Arc::clone(them),
            plaintext.to_vec(),
        );
        let aead = preferred_aead();
        // A handshake (KEM and signatures) is not light work.
        self.shared
            .sessions
            .run(false, move |s| {
                s.initiate(&identity, &name, &them, bundle.as_slice(), aead, &pt)
            })
            .await
    }
}
