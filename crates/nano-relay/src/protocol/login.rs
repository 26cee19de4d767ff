//! Logging in on one connection (PROTOCOL.md §12): `hello` is answered with a `challenge`
//! signed by the relay's identity over both nonces and the connection's channel binding; `auth`
//! is the user's signature over the same transcript, checked in a batch ([`crate::crypto::auth_verifier`]).
//!
//! Both signatures cover the RFC 9266 `tls-exporter` value of the connection, so a login can
//! neither be relayed to another connection nor answered by anyone who does not hold the relay's
//! keys. A plain connection has no binding: it may log in only from loopback.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use nano_crypto::{CryptoMode, OsRng, SigContext, Signature, VerificationTask};
use nano_proto::frames::NONCE_LEN;
use nano_proto::signed::{Login, auth_content, challenge_content};
use nano_proto::{Bytes, ChannelBinding, RelayFrame, Username};
use rand_core::RngCore;

use crate::directory::UserEntry;
use crate::error::RelayError;
use crate::state::Shared;

use super::{LoggedIn, Output, PAGE, Session};

/// Logins one connection may start (`hello` frames): a client needs one, a few retries are
/// allowed; more are refused `rate_limited` ([`RelayError::TooManyLogins`]), so a connection cannot make the relay sign on
/// demand.
pub(crate) const MAX_LOGIN_ATTEMPTS: u32 = 16;

/// What the relay knows about a connection's transport.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transport {
    /// The connection's channel binding (`None` for plain WebSocket).
    pub binding: ChannelBinding,
    /// The peer's address.
    pub peer: IpAddr,
}

impl Transport {
    /// The transport of a connection from `peer` with `binding`.
    pub(crate) fn new(binding: ChannelBinding, peer: IpAddr) -> Self {
        Self { binding, peer }
    }

    /// Logins need a bound channel (TLS), except from loopback.
    pub(crate) fn allows_login(&self) -> bool {
        self.peer.to_canonical().is_loopback()
            || matches!(self.binding, ChannelBinding::TlsExporter(_))
    }
}

/// A `challenge` sent and not yet answered: one `auth` spends it.
#[derive(Debug)]
pub(crate) struct Challenged {
    relay_nonce: [u8; NONCE_LEN],
    client_nonce: [u8; NONCE_LEN],
}

impl Challenged {
    fn login(&self, binding: ChannelBinding) -> Login<'_> {
        Login {
            relay_nonce: &self.relay_nonce,
            client_nonce: &self.client_nonce,
            binding,
        }
    }
}

/// Answers `hello`: a fresh relay nonce and the relay's signature (its key of `mode`, on the
/// crypto pool) over [`challenge_content`].
///
/// # Errors
/// [`RelayError::TlsRequired`] on a plain connection from off loopback;
/// `mode_not_allowed` below the relay's `minimum_crypto_mode`;
/// `invalid_field` for a nonce that is not 32 bytes; [`RelayError::Unavailable`] when the crypto
/// pool is full.
pub(crate) async fn challenge(
    shared: &Arc<Shared>,
    transport: &Transport,
    mode: CryptoMode,
    client_nonce: &Bytes,
) -> Result<(Challenged, RelayFrame), RelayError> {
    if !transport.allows_login() {
        return Err(RelayError::TlsRequired);
    }
    shared.check_floor(mode)?;
    let client_nonce: [u8; NONCE_LEN] = client_nonce.as_slice().try_into().map_err(|_| {
        RelayError::Proto(nano_proto::ProtoError::InvalidField {
            field: "nonce",
            reason: "must be 32 bytes".into(),
        })
    })?;
    let mut relay_nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut relay_nonce);
    let pending = Challenged {
        relay_nonce,
        client_nonce,
    };
    let content = challenge_content(&shared.relay_id, &pending.login(transport.binding));
    let identity = Arc::clone(&shared.identity);
    let started = Instant::now();
    let signature = shared
        .crypto
        .run(move || identity.sign(mode, SigContext::RelayChallenge, &content, &mut OsRng))
        .await??;
    shared.metrics.crypto_op("sign", mode, started.elapsed());
    let frame = RelayFrame::Challenge {
        nonce: Bytes(relay_nonce.to_vec()),
        relay_id: shared.relay_id.to_hex(),
        crypto_mode: mode,
        channel_binding: transport.binding.kind(),
        signature: Bytes(signature.as_bytes().to_vec()),
    };
    Ok((pending, frame))
}

/// Checks `auth`: `username`'s key of `mode` signed [`auth_content`] for the challenge spent.
///
/// # Errors
/// [`RelayError::AuthFailed`] for an unknown user, a mode the user does not hold, or a signature
/// that does not decode or verify; `mode_not_allowed` below the relay's floor;
/// [`RelayError::Corrupt`] (`internal`) for a stored bundle that does not verify; storage errors
/// as they are.
pub(crate) async fn verify(
    shared: &Arc<Shared>,
    transport: &Transport,
    spent: &Challenged,
    username: &Username,
    mode: CryptoMode,
    signature: &Bytes,
) -> Result<Arc<UserEntry>, RelayError> {
    shared.check_floor(mode)?;
    let user = shared
        .user(username.as_str())
        .await?
        .ok_or(RelayError::AuthFailed)?;
    let user = shared.decoded(user).await.map_err(|e| match e {
        RelayError::NotFound => RelayError::AuthFailed,
        e => e,
    })?;
    let key = user
        .bundle()?
        .verifying_key(mode)
        .ok_or(RelayError::AuthFailed)?;
    let sig =
        Signature::from_bytes(mode, signature.as_slice()).map_err(|_| RelayError::AuthFailed)?;
    let content = auth_content(&shared.relay_id, &spent.login(transport.binding), username);
    let task = VerificationTask::new(0, key, SigContext::RelayAuth, &content, &sig)
        .map_err(|_| RelayError::AuthFailed)?;
    let started = Instant::now();
    let ok = shared.auth.verify(task).await?;
    shared.metrics.crypto_op("verify", mode, started.elapsed());
    if ok {
        Ok(user)
    } else {
        Err(RelayError::AuthFailed)
    }
}

impl Session {
    pub(super) fn already_authenticated(&self) -> RelayFrame {
        let e = RelayError::Proto(nano_proto::ProtoError::InvalidField {
            field: "type",
            reason: "this connection is already authenticated".into(),
        });
        self.err(&e, None)
    }

    /// `hello` → the relay's signed `challenge` (a new one replaces any unanswered one).
    pub(super) async fn hello(&mut self, mode: CryptoMode, client_nonce: &Bytes) -> Output {
        if self.user.is_some() {
            return vec![self.already_authenticated()].into();
        }
        self.challenged = None;
        if self.logins >= MAX_LOGIN_ATTEMPTS {
            return vec![self.err(&RelayError::TooManyLogins, None)].into();
        }
        self.logins += 1;
        match challenge(&self.shared, &self.transport, mode, client_nonce).await {
            Ok((challenged, frame)) => {
                self.challenged = Some(challenged);
                vec![frame].into()
            }
            Err(e) => vec![self.err(&e, None)].into(),
        }
    }

    pub(super) async fn auth(
        &mut self,
        username: Username,
        mode: CryptoMode,
        signature: Bytes,
    ) -> Output {
        if self.user.is_some() {
            return vec![self.already_authenticated()].into();
        }
        // A challenge answers one attempt: replaying a signature over it can never succeed
        // again. After a failure the client starts over with `hello`.
        let Some(spent) = self.challenged.take() else {
            return vec![self.err(&RelayError::AuthFailed, None)].into();
        };
        let checked = verify(
            &self.shared,
            &self.transport,
            &spent,
            &username,
            mode,
            &signature,
        )
        .await;
        match checked {
            Ok(user) => self.authenticated(user).await,
            Err(e) => {
                tracing::debug!(conn = self.conn_id, code = %e.code(), "auth refused");
                vec![self.err(&e, None)].into()
            }
        }
    }

    pub(super) async fn authenticated(&mut self, user: Arc<UserEntry>) -> Output {
        let uid = user.record.id;
        // A stored name that does not parse fails before the session is registered (the hub
        // entry is removed on drop only for a session that has its user).
        let username = match Username::new(&user.record.username) {
            Ok(u) => u,
            Err(e) => return vec![self.err(&e.into(), None)].into(),
        };
        // Registered before the inbox is read: a message committed meanwhile is either in the
        // page or queued as an event, and events at or below the cursor are skipped.
        self.shared
            .hub
            .register(uid, self.conn_id, self.mailbox.clone());
        self.user = Some(LoggedIn {
            id: uid,
            name: username.clone(),
        });
        tracing::debug!(conn = self.conn_id, "authenticated");
        let (pending, one_time_prekeys) = match self
            .shared
            .blocking(move |s| Ok((s.storage.pending_count(uid)?, s.storage.prekey_counts(uid)?)))
            .await
        {
            Ok((n, c)) => (n, c.map(nano_proto::PrekeyCounts::from)),
            Err(e) => return vec![self.err(&e, None)].into(),
        };
        let mut frames = vec![RelayFrame::AuthOk {
            username,
            pending,
            one_time_prekeys,
        }];
        match self.page(0, PAGE, true).await {
            Ok(f) => frames.extend(f),
            Err(e) => frames.push(self.err(&e, None)),
        }
        frames.into()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn logins_need_tls_off_loopback() {
        let tls = ChannelBinding::TlsExporter([1; 32]);
        let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mapped_loopback = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert!(!Transport::new(ChannelBinding::None, remote).allows_login());
        assert!(Transport::new(tls, remote).allows_login());
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            mapped_loopback,
        ] {
            assert!(Transport::new(ChannelBinding::None, ip).allows_login());
        }
        let mapped_remote = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert!(!Transport::new(ChannelBinding::None, mapped_remote).allows_login());
    }
}
