//! The session a message goes out on (PROTOCOL.md §14.13, "Sending"): the current one with the
//! contact in the chosen mode, else a new one from the contact's prekey bundle, fetched over
//! the connection and verified; `None` (a sealed envelope) when the contact has no prekeys of
//! the mode or its claims are rate limited. One first message per contact at a time; a contact
//! without prekeys is remembered for [`NO_PREKEYS_TTL`]. When the mode is known before the
//! contact's identity bundle ([`crate::ModeChoice::Explicit`]), a first contact asks for both
//! bundles in one `get_contact` ([`Client::first_contact`]).

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

/// A first contact's turn and prekey bundle, claimed with the contact's identity bundle: one
/// round trip to the relay instead of two before the handshake.
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

    /// For a message to `recipient` in `mode` whose identity bundle is not cached: the
    /// identity bundle (verified and checked against the trust policy) and, when no session is
    /// held, the initiation turn and the prekey bundle, both from one `get_contact`. When the
    /// relay refuses `get_contact` (an unknown name, a mode below a floor, a relay that predates
    /// it) the identity bundle comes over HTTP as for any other send, and the refusal is given
    /// back beside it, so the send's own checks can speak first.
    ///
    /// # Errors
    /// As [`Shared::bundle_retrying`]; the store's; a `contact` answer for another name or mode.
    pub(crate) async fn first_contact(
        &self,
        recipient: &str,
        mode: CryptoMode,
        deadline: tokio::time::Instant,
    ) -> Result<(Arc<PublicBundle>, Result<Option<FirstContact>>)> {
        let identity_over_http = || self.shared.bundle_retrying(recipient, deadline);
        if self.has_session(recipient, mode).await? {
            return Ok((identity_over_http().await?, Ok(None)));
        }
        let turn = self.shared.initiation(recipient).lock_owned().await;
        // Another send may have started the session while this one waited.
        if self.has_session(recipient, mode).await? {
            return Ok((identity_over_http().await?, Ok(None)));
        }
        if self.shared.lacks_prekeys(recipient, mode) {
            let first = FirstContact { turn, bundle: None };
            return Ok((identity_over_http().await?, Ok(Some(first))));
        }
        let ask = ClientFrame::GetContact {
            username: Username::new(recipient)?,
            crypto_mode: mode,
        };
        match self.ask(ask, deadline).await {
            Ok(nano_proto::RelayFrame::Contact {
                username,
                crypto_mode,
                identity,
                bundle,
            }) if username.as_str() == recipient && crypto_mode == mode => {
                let them = self
                    .shared
                    .trusted(recipient, crate::api::decode_bundle(identity.as_slice())?)?;
                if bundle.is_none() {
                    self.shared.note_no_prekeys(recipient, mode);
                }
                let bundle = bundle.map(|b| b.0);
                Ok((them, Ok(Some(FirstContact { turn, bundle }))))
            }
            Ok(f) => Err(ClientError::Protocol(format!(
                "expected {recipient}'s {mode} contact bundles, got {}",
                f.type_name()
            ))),
            // Claims are rate limited: this message goes sealed rather than wait.
            Err(ClientError::Relay {
                code: nano_proto::ErrorCode::RateLimited,
                ..
            }) => {
                let first = FirstContact { turn, bundle: None };
                Ok((identity_over_http().await?, Ok(Some(first))))
            }
            Err(e) => Ok((identity_over_http().await?, Err(e))),
        }
    }

    /// `frame` as a request on the connection, tried again while the answer is retryable (a
    /// lost connection, a relay restarting) until `deadline`; a rate limit is not waited out.
    ///
    /// # Errors
    /// The relay's refusal, or the last retryable failure.
    async fn ask(
        &self,
        frame: ClientFrame,
        deadline: tokio::time::Instant,
    ) -> Result<nano_proto::RelayFrame> {
        let mut pause = Duration::from_millis(100);
        loop {
            match crate::prekeys::request(&self.shared, frame.clone()).await {
                Err(e)
                    if e.is_retryable()
                        && !matches!(
                            e,
                            ClientError::Relay {
                                code: nano_proto::ErrorCode::RateLimited,
                                ..
                            }
                        )
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
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
        match self.ask(ask, deadline).await {
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
            // Claims are rate limited: this message goes sealed rather than wait.
            Err(ClientError::Relay {
                code: nano_proto::ErrorCode::RateLimited,
                ..
            }) => Ok(None),
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
