//! `--presealed`: the relay alone. Payloads are encrypted before the timed phase and sent on raw
//! authenticated connections, keeping `pipeline` sends in flight; receivers are raw
//! authenticated connections that ack every pushed message without opening it. What remains is
//! the relay's work: store, acknowledge, push, and take the ack.
//!
//! Session messages (the default) are real: sessions between sender and user pairs, each
//! message encrypted once and sent once (its id is derived from its bytes). Sealed envelopes
//! (`--sealed`) are replayed with a fresh message id written into each one's header (the relay
//! takes the id from there; the signature no longer verifies, which no one here checks: the
//! relay never opens a message).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use nano_client::login::{LoginAttempt, channel_binding};
use nano_crypto::{AeadId, CryptoMode, OsRng};
use nano_proto::{ClientFrame, MessageId, Payload, RelayFrame, Username};
use rand_core::RngCore;
use tokio_tungstenite::tungstenite::Message;

use crate::load::run::Ctx;
use crate::load::setup::User;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends in flight by message id: their sequence number and when they were written.
pub(crate) type InFlight = Arc<Mutex<HashMap<MessageId, (u64, Instant)>>>;

fn frame(m: Message) -> Option<anyhow::Result<RelayFrame>> {
    match m {
        Message::Text(t) => Some(RelayFrame::from_json(&t).map_err(Into::into)),
        Message::Binary(b) => Some(RelayFrame::from_binary(&b).map_err(Into::into)),
        _ => None,
    }
}

/// The next relay frame on `ws`.
pub(crate) async fn next(ws: &mut Ws) -> anyhow::Result<RelayFrame> {
    loop {
        let m = ws.next().await.context("connection closed")??;
        if let Some(f) = frame(m) {
            return f;
        }
    }
}

/// A raw connection authenticated as `user`. Its backlog follows (`message` frames, then
/// `fetched`): senders skip it, receivers ack it.
async fn authenticated(ctx: &Ctx, user: &User) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        ctx.ws_url.as_str(),
        Some(nano_client::client::websocket_config()),
        true,
    )
    .await?;
    let name = Username::new(&user.name)?;
    let (attempt, hello) = LoginAttempt::start(user.identity.min_mode(), channel_binding(&ws)?);
    ws.send(Message::binary(hello.to_binary()?)).await?;
    let challenge = next(&mut ws).await?;
    let auth = attempt.answer(&ctx.relay, challenge, &user.identity, &name)?;
    ws.send(Message::binary(auth.to_binary()?)).await?;
    loop {
        match next(&mut ws).await? {
            RelayFrame::AuthOk { .. } => return Ok(ws),
            RelayFrame::Error { code, .. } => bail!("auth: {code}"),
            _ => {}
        }
    }
}

/// Starts a raw receiver per user that acks everything delivered to it and records receipts.
pub(crate) async fn receivers(ctx: Arc<Ctx>, inflight: InFlight) -> anyhow::Result<()> {
    for u in ctx.users.iter() {
        let ws = authenticated(&ctx, u).await?;
        tokio::spawn(receive(
            Arc::clone(&ctx),
            u.clone(),
            Arc::clone(&inflight),
            ws,
        ));
    }
    Ok(())
}

/// Acks deliveries in batches (what has arrived together, up to `ACK_BATCH`) and asks for the
/// next inbox page when one ends with `more`. When the relay closes the connection (a receiver
/// that fell behind is closed as a slow reader), it logs in again and reads the rest from its
/// inbox, as a client does; it gives up after ten failed logins in a row.
async fn receive(ctx: Arc<Ctx>, user: User, inflight: InFlight, mut ws: Ws) {
    const ACK_BATCH: usize = 64;
    loop {
        let (mut tx, rx) = ws.split();
        let mut batches = rx.ready_chunks(ACK_BATCH);
        'conn: while let Some(batch) = batches.next().await {
            let mut ids = Vec::with_capacity(batch.len());
            let mut fetch = None;
            for m in batch {
                let Ok(m) = m else { break 'conn };
                match frame(m) {
                    Some(Ok(RelayFrame::Message { id, .. })) => {
                        // Looked up, not removed: the sender may read its `sent` after this.
                        let found = inflight.lock().ok().and_then(|m| m.get(&id).copied());
                        if let Some((seq, at)) = found {
                            ctx.stats.received_raw(seq, at, ctx.epoch);
                        }
                        ids.push(id);
                    }
                    Some(Ok(RelayFrame::Fetched {
                        more: true,
                        last_seq,
                        ..
                    })) => fetch = Some(last_seq),
                    _ => {}
                }
            }
            let ack = (!ids.is_empty()).then_some(ClientFrame::Ack { ids });
            let fetch = fetch.map(|after| ClientFrame::Fetch { after, limit: None });
            for f in ack.iter().chain(fetch.iter()) {
                let Ok(bytes) = f.to_binary() else { continue };
                if tx.send(Message::binary(bytes)).await.is_err() {
                    break 'conn;
                }
            }
        }
        ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0;
        ws = loop {
            match authenticated(&ctx, &user).await {
                Ok(w) => break w,
                Err(_) if attempts < 10 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return,
            }
        };
    }
}

/// What presealed senders send: (recipient, payload) pairs.
pub(crate) enum Presealed {
    /// Sealed envelopes, replayed round robin with a fresh id each time (never exhausted).
    Envelopes(Vec<(String, Vec<u8>)>),
    /// Session messages in conversation order, each sent once; senders stop when all are.
    Sessions {
        /// The messages.
        messages: Vec<(String, Vec<u8>)>,
        /// The next one to send.
        next: std::sync::atomic::AtomicUsize,
    },
}

impl Presealed {
    /// The next payload to send and its id; `None` when every session message went out.
    fn take(&self, i: &mut usize) -> anyhow::Result<Option<(String, Payload, MessageId)>> {
        match self {
            Self::Envelopes(sealed) => {
                let (to, env) = &sealed[*i % sealed.len()];
                *i += 1;
                let mut id = [0u8; 16];
                OsRng.fill_bytes(&mut id);
                Ok(Some((to.clone(), with_id(env, &id)?, MessageId(id))))
            }
            Self::Sessions { messages, next } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                Ok(messages.get(n).map(|(to, m)| {
                    let p = Payload(m.clone());
                    let id = p.session_message_id();
                    (to.clone(), p, id)
                }))
            }
        }
    }
}

/// The text every presealed message carries.
const PRESEALED_TEXT: &[u8] = b"Load test message (presealed)";

/// Seals `n` envelopes from random users to random users.
pub(crate) fn preseal(ctx: &Ctx, n: usize, mode: CryptoMode) -> anyhow::Result<Presealed> {
    let users = &ctx.users;
    let sealed = (0..n)
        .map(|_| {
            let from = ctx.sender();
            let to = &users[(OsRng.next_u64() % users.len() as u64) as usize];
            let sealed = nano_crypto::seal(
                &from.identity,
                to.identity.public_bundle(),
                PRESEALED_TEXT,
                mode,
                AeadId::ChaCha20Poly1305,
            )?;
            Ok((to.name.clone(), sealed))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Presealed::Envelopes(sealed))
}

/// Conversations presealed session messages are spread over.
const PRESEALED_SESSIONS: usize = 64;

/// `n` session messages over [`PRESEALED_SESSIONS`] sessions from senders to users (each a
/// real handshake against prekeys made here for the user, then messages on its ratchet), the
/// conversations interleaved.
pub(crate) fn preseal_sessions(ctx: &Ctx, n: usize, mode: CryptoMode) -> anyhow::Result<Presealed> {
    use nano_crypto::session::{PrekeyBundle, Session, SignedPrekeySecrets};
    let pairs = PRESEALED_SESSIONS
        .min(ctx.users.len() * ctx.senders.len())
        .max(1);
    let per = n.div_ceil(pairs);
    let mut conversations = Vec::with_capacity(pairs);
    for k in 0..pairs {
        let from = &ctx.senders[k % ctx.senders.len()];
        let to = &ctx.users[k % ctx.users.len()];
        let signed = SignedPrekeySecrets::generate(mode, 1, &mut OsRng)?;
        // The bundle as the relay would hand it out without one-time prekeys.
        let bundle = PrekeyBundle::new(signed.certify(&to.identity, None, &mut OsRng)?, None)?;
        let (mut session, handshake) = Session::initiate(
            &from.identity,
            to.identity.public_bundle(),
            &bundle,
            AeadId::ChaCha20Poly1305,
            PRESEALED_TEXT,
            &mut OsRng,
        )?;
        let mut messages = Vec::with_capacity(per);
        messages.push(handshake);
        while messages.len() < per {
            messages.push(session.encrypt(PRESEALED_TEXT, &mut OsRng)?);
        }
        conversations.push((to.name.clone(), messages.into_iter()));
    }
    let mut out = Vec::with_capacity(per * pairs);
    while out.len() < per * pairs {
        for (to, messages) in &mut conversations {
            if let Some(m) = messages.next() {
                out.push((to.clone(), m));
            }
        }
    }
    Ok(Presealed::Sessions {
        messages: out,
        next: Default::default(),
    })
}

/// `sealed` (an envelope) with `id` as its header's `message_id` (envelope bytes 3..19,
/// PROTOCOL.md §6).
fn with_id(sealed: &[u8], id: &[u8; 16]) -> anyhow::Result<Payload> {
    let mut bytes = sealed.to_vec();
    bytes
        .get_mut(3..19)
        .context("envelope too short")?
        .copy_from_slice(id);
    Ok(Payload(bytes))
}

/// One sender connection sending `presealed`, `pipeline` in flight, until `stop` (or until
/// every presealed session message went out).
pub(crate) async fn sender(
    ctx: Arc<Ctx>,
    presealed: Arc<Presealed>,
    inflight: InFlight,
    pipeline: usize,
    stop: tokio::time::Instant,
) -> anyhow::Result<()> {
    let me = ctx.sender();
    let ws = authenticated(&ctx, me).await?;
    let (mut tx, mut rx) = ws.split();
    let mut outstanding = 0usize;
    let mut i = OsRng.next_u64() as usize;
    let mut exhausted = false;
    loop {
        while outstanding < pipeline && !exhausted && tokio::time::Instant::now() < stop {
            if let Some(p) = &ctx.pacer {
                // Paced: each send goes out on its own, at its slot.
                tx.flush().await?;
                p.wait().await;
            }
            let Some((to, payload, id)) = presealed.take(&mut i)? else {
                exhausted = true;
                break;
            };
            let (seq, _) = ctx.stats.next_message(ctx.epoch);
            inflight
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .insert(id, (seq, Instant::now()));
            let f = ClientFrame::SendMessage {
                recipient: Username::new(&to)?,
                message: payload,
                crypto_mode: ctx.mode,
                // The relay reads the id from the payload.
                id: None,
            };
            tx.feed(Message::binary(f.to_binary()?)).await?;
            outstanding += 1;
        }
        tx.flush().await?;
        if outstanding == 0 {
            break;
        }
        let Some(m) = tokio::time::timeout(Duration::from_secs(30), rx.next())
            .await
            .ok()
            .flatten()
        else {
            bail!("no answer from the relay");
        };
        match frame(m?) {
            Some(Ok(RelayFrame::Sent { id, .. })) => {
                outstanding -= 1;
                let seq = inflight.lock().ok().and_then(|m| m.get(&id).map(|v| v.0));
                if let Some(seq) = seq {
                    ctx.stats.acked(seq);
                }
            }
            Some(Ok(RelayFrame::Error { code, .. })) => {
                outstanding -= 1;
                ctx.stats.error(code.as_str());
            }
            _ => {}
        }
    }
    let _ = tx.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_id;

    #[test]
    fn with_id_rewrites_exactly_the_header_id() {
        let original: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let id = [0xAB; 16];
        let patched = with_id(&original, &id).unwrap().0;
        assert_eq!(patched.len(), original.len());
        assert_eq!(patched[3..19], id);
        assert_eq!(patched[..3], original[..3]);
        assert_eq!(patched[19..], original[19..]);
        assert!(with_id(&[0; 18], &id).is_err());
    }
}
