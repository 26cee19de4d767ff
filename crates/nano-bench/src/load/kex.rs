//! A key-exchange virtual user: the guide's `{"type":"key_exchange","crypto_mode":…}` on a raw
//! WebSocket, then the full exchange with real crypto: the relay's signature over its ephemeral
//! key is checked against its identity and its expiry against our clock, the key is
//! encapsulated to, and the confirmation checked. No channel results: the exchange is a probe
//! of the relay's KEM work (PROTOCOL.md §12).

use anyhow::{Context, bail};
use futures_util::SinkExt;
use nano_crypto::channel::{channel_key, verify_confirmation};
use nano_crypto::{CryptoMode, KemPublicKey, OsRng, PublicBundle, SigContext, Signature};
use nano_proto::signed::key_exchange_content;
use nano_proto::{Bytes, ClientFrame, RelayFrame};
use tokio_tungstenite::tungstenite::Message;

use crate::load::raw::next;

/// One complete exchange in `mode` against the relay at `ws_url` whose identity is `relay`.
pub(crate) async fn exchange(
    ws_url: &str,
    relay: &PublicBundle,
    mode: CryptoMode,
) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let ask = ClientFrame::KeyExchange {
        crypto_mode: mode,
        key_id: None,
        ciphertext: None,
    };
    ws.send(Message::text(ask.to_json()?)).await?;
    let (key_id, pk, sig, expires) = match next(&mut ws).await? {
        RelayFrame::KeyExchange {
            key_id,
            public_key,
            signature,
            expires_at_ms,
            ..
        } => (key_id, public_key, signature, expires_at_ms),
        RelayFrame::Error { code, .. } => bail!("{code}"),
        f => bail!("unexpected {}", f.type_name()),
    };
    let vk = relay
        .verifying_key(mode)
        .context("relay has no key for the mode")?;
    vk.verify(
        SigContext::RelayKeyExchange,
        &key_exchange_content(mode, key_id, expires, pk.as_slice()),
        &Signature::from_bytes(mode, sig.as_slice())?,
    )?;
    if expires <= nano_proto::now_ms() {
        bail!("the relay offered a key that has expired");
    }
    let pk = KemPublicKey::from_bytes(mode, pk.as_slice())?;
    let (ct, ss) = pk.encapsulate(&mut OsRng)?;
    let done = ClientFrame::KeyExchange {
        crypto_mode: mode,
        key_id: Some(key_id),
        ciphertext: Some(Bytes(ct.as_bytes().to_vec())),
    };
    ws.send(Message::text(done.to_json()?)).await?;
    match next(&mut ws).await? {
        RelayFrame::KeyExchangeOk { confirmation, .. } => {
            let key = channel_key(&ss, mode, key_id, &pk, &ct)?;
            verify_confirmation(&key, key_id, confirmation.as_slice())?;
        }
        RelayFrame::Error { code, .. } => bail!("{code}"),
        f => bail!("unexpected {}", f.type_name()),
    }
    let _ = ws.close(None).await;
    Ok(())
}
