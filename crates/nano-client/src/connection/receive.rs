//! The receiving side of the connection task: pushed messages go to the inbox, those of a new
//! sender after its identity bundle (`get_identity`, [`crate::identities::Identities`]); acks
//! the inbox says were lost are written again; `UpToDate` is told once the backlog is
//! delivered.

use std::sync::Arc;
use std::time::Instant;

use futures_util::SinkExt;
use nano_proto::{ClientFrame, RelayFrame};
use tokio::sync::mpsc;

use super::{Asker, State, Ws, encode};
use crate::client::{Incoming, Shared};
use crate::inbox::Pushed;

/// Received messages go to the inbox, except those whose sender's identity bundle is not
/// cached: they wait ([`crate::identities::Identities`]) while one `get_identity` per new
/// sender is written. A sender that cannot be asked for (more than
/// [`crate::identities::MAX_WAITING`] requests unanswered) has its messages opened at once,
/// after the ready ones (which, for any one sender, came first).
///
/// # Errors
/// The connection failed while writing.
pub(super) async fn admit(
    shared: &Arc<Shared>,
    st: &mut State,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
    ws: &mut Ws,
) -> std::result::Result<(), ()> {
    let items = msgs.into_iter().map(|p| (p.sender.clone(), p)).collect();
    let known = |name: &str| shared.cached_bundle(name).is_some();
    let admitted = st.identities.admit(items, known, Instant::now());
    let mut ready = admitted.ready;
    let mut asked = false;
    for name in admitted.ask {
        // Requests are answered in order; a relay that stops answering gets no more asks.
        let frame = nano_proto::Username::new(&name)
            .ok()
            .filter(|_| st.requests.len() < crate::identities::MAX_WAITING)
            .and_then(|username| encode(&ClientFrame::GetIdentity { username }).ok());
        match frame {
            Some(m) => {
                ws.feed(m).await.map_err(|_| ())?;
                st.requests.push_back(Asker::Identity(name));
                asked = true;
            }
            // Its messages are newer than any of its in `ready`: they go out behind them.
            None => ready.extend(st.identities.answered(&name)),
        }
    }
    if asked {
        ws.flush().await.map_err(|_| ())?;
    }
    deliver(shared, st, ready, incoming, ws).await
}

/// The relay answered the `get_identity` for `sender` (`answer`, or `None` for an `error`):
/// the bundle is cached if the answer holds one, and the sender's waiting messages go to the
/// inbox, which fetches the bundle itself if it is still missing (and reports what that gives).
///
/// # Errors
/// The connection failed while writing.
pub(super) async fn identity_settled(
    shared: &Arc<Shared>,
    st: &mut State,
    sender: &str,
    answer: Option<RelayFrame>,
    incoming: &mpsc::Sender<Incoming>,
    ws: &mut Ws,
) -> std::result::Result<(), ()> {
    if let Some(answer) = answer {
        identity_answered(shared, sender, answer);
    }
    let msgs = st.identities.answered(sender);
    deliver(shared, st, msgs, incoming, ws).await
}

/// Caches `sender`'s identity bundle from an `identity_bundle` answer once it decodes and its
/// proofs of possession verify; the trust policy is applied when its messages are opened. Any
/// other answer caches nothing, and the inbox fetches the bundle itself.
fn identity_answered(shared: &Shared, sender: &str, answer: RelayFrame) {
    let RelayFrame::IdentityBundle { username, bundle } = answer else {
        tracing::warn!("expected an identity bundle; the inbox fetches it instead");
        return;
    };
    if username.as_str() != sender {
        tracing::warn!("an identity bundle for another name; the inbox fetches it instead");
        return;
    }
    match crate::api::decode_bundle(bundle.as_slice()) {
        // A key the trust policy refuses is reported when the message is opened.
        Ok(b) => drop(shared.trusted(sender, b)),
        Err(e) => tracing::warn!(error = %e, "an undecodable identity bundle; ignored"),
    }
}

/// Tells the application the backlog is in once nothing of it waits for an identity.
pub(super) async fn owe_up_to_date(st: &mut State, incoming: &mpsc::Sender<Incoming>) {
    if st.up_to_date_owed && st.identities.is_empty() {
        st.up_to_date_owed = false;
        let _ = incoming.send(Incoming::UpToDate).await;
    }
}

/// Hands `msgs` to the inbox and writes the acks it says were lost again; then the
/// `UpToDate` owed, if nothing waits any more.
///
/// # Errors
/// The connection failed while writing.
pub(super) async fn deliver(
    shared: &Arc<Shared>,
    st: &mut State,
    msgs: Vec<Pushed>,
    incoming: &mpsc::Sender<Incoming>,
    ws: &mut Ws,
) -> std::result::Result<(), ()> {
    let reack = crate::inbox::deliver(shared, &mut st.inbox, msgs, incoming).await;
    if !reack.is_empty()
        && let Ok(m) = encode(&ClientFrame::Ack { ids: reack })
    {
        ws.send(m).await.map_err(|_| ())?;
    }
    owe_up_to_date(st, incoming).await;
    Ok(())
}
