//! Logging in to a relay on one connection (PROTOCOL.md §12), free of I/O:
//! [`LoginAttempt::start`] makes the `hello`; [`LoginAttempt::answer`] checks the relay's
//! `challenge` against its pinned identity, our nonce and this connection's channel binding, and
//! only then signs the `auth`. A relay that cannot prove itself gets nothing signed.

use nano_crypto::{CryptoMode, Identity, OsRng, PublicBundle, SigContext, Signature};
use nano_proto::binding::{TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN};
use nano_proto::frames::NONCE_LEN;
use nano_proto::signed::{Login, auth_content, challenge_content};
use nano_proto::{Bytes, ChannelBinding, ClientFrame, RelayFrame, Username};
use rand_core::RngCore;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, Result};

/// This connection's channel binding: the RFC 9266 `tls-exporter` value over TLS (TLS 1.3
/// exporter, label `EXPORTER-Channel-Binding`, empty context, 32 bytes), none over plain TCP
/// (which [`crate::tls::require_tls_off_loopback`] allows on loopback only).
///
/// # Errors
/// [`ClientError::Protocol`] if the TLS library cannot export (no TLS 1.3 session).
pub fn channel_binding(ws: &WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<ChannelBinding> {
    match ws.get_ref() {
        MaybeTlsStream::Rustls(s) => s
            .get_ref()
            .1
            .export_keying_material([0u8; TLS_EXPORTER_LEN], TLS_EXPORTER_LABEL, Some(&[]))
            .map(ChannelBinding::TlsExporter)
            .map_err(|e| ClientError::Protocol(format!("TLS exporter: {e}"))),
        MaybeTlsStream::Plain(_) => Ok(ChannelBinding::None),
        _ => Err(ClientError::Protocol("unsupported transport".into())),
    }
}

/// One login in progress: our `hello` has gone out, the relay's `challenge` is awaited.
#[derive(Debug)]
pub struct LoginAttempt {
    mode: CryptoMode,
    client_nonce: [u8; NONCE_LEN],
    binding: ChannelBinding,
}

impl LoginAttempt {
    /// A login in `mode` (the mode of the relay key asked to sign, and of our `auth`) on a
    /// connection with `binding`; returns it and the `hello` frame (a fresh 32-byte nonce).
    pub fn start(mode: CryptoMode, binding: ChannelBinding) -> (Self, ClientFrame) {
        let mut client_nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut client_nonce);
        let hello = ClientFrame::Hello {
            crypto_mode: mode,
            nonce: Bytes(client_nonce.to_vec()),
        };
        (
            Self {
                mode,
                client_nonce,
                binding,
            },
            hello,
        )
    }

    /// Checks the relay's answer to `hello` against `relay` (the pinned relay identity) and, if
    /// it proves the relay, returns `username`'s `auth` signed by `identity`.
    ///
    /// # Errors
    /// [`ClientError::Relay`] if the answer is an `error` frame;
    /// [`ClientError::RelayIdentityChanged`] if another relay id answers;
    /// [`ClientError::RelayNotAuthenticated`] if the relay signed in another mode, saw another
    /// kind of channel (a TLS-terminating proxy in between), or its signature does not verify;
    /// [`ClientError::Protocol`] for any other frame.
    pub fn answer(
        self,
        relay: &PublicBundle,
        answer: RelayFrame,
        identity: &Identity,
        username: &Username,
    ) -> Result<ClientFrame> {
        let (nonce, relay_id, mode, kind, signature) = match answer {
            RelayFrame::Challenge {
                nonce,
                relay_id,
                crypto_mode,
                channel_binding,
                signature,
            } => (nonce, relay_id, crypto_mode, channel_binding, signature),
            RelayFrame::Error { code, message, .. } => {
                return Err(ClientError::Relay { code, message });
            }
            f => {
                return Err(ClientError::Protocol(format!(
                    "expected challenge, got {}",
                    f.type_name()
                )));
            }
        };
        let relay_fp = relay.fingerprint();
        if relay_id != relay_fp.to_hex() {
            return Err(ClientError::RelayIdentityChanged {
                pinned: relay_fp.to_hex(),
                now: relay_id,
            });
        }
        let refused = |why: &str| ClientError::RelayNotAuthenticated(why.to_owned());
        if mode != self.mode {
            return Err(refused("it signed in a mode other than the one asked for"));
        }
        if kind != self.binding.kind() {
            return Err(refused(
                "it saw a different kind of channel: something between us terminates TLS",
            ));
        }
        let relay_nonce: [u8; NONCE_LEN] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| refused("its nonce is not 32 bytes"))?;
        let key = relay
            .verifying_key(mode)
            .ok_or_else(|| refused("the pinned relay identity has no key of that mode"))?;
        let signature = Signature::from_bytes(mode, signature.as_slice())
            .map_err(|_| refused("its signature does not decode"))?;
        let login = Login {
            relay_nonce: &relay_nonce,
            client_nonce: &self.client_nonce,
            binding: self.binding,
        };
        key.verify(
            SigContext::RelayChallenge,
            &challenge_content(&relay_fp, &login),
            &signature,
        )
        .map_err(|_| refused("its signature does not verify"))?;
        let sig = identity.sign(
            mode,
            SigContext::RelayAuth,
            &auth_content(&relay_fp, &login, username),
            &mut OsRng,
        )?;
        Ok(ClientFrame::Auth {
            username: username.clone(),
            crypto_mode: mode,
            signature: Bytes(sig.as_bytes().to_vec()),
        })
    }
}
