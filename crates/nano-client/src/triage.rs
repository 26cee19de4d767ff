//! The inbox's decisions that need no I/O: what a pushed message is before anything is
//! fetched or opened ([`triage`]), what a failed bundle fetch means for it ([`bundle_failure`]),
//! what an opened envelope becomes ([`opened_envelope`]), and what the session store's answer
//! to a session payload means ([`opened_session`]: shown, left, parked, lost or refused). The inbox (`inbox.rs`) feeds
//! them events and does the fetching, opening and writing around them.

use std::time::Instant;

use nano_crypto::{CryptoMode, Envelope, EnvelopeHeader, Fingerprint};
use nano_proto::MessageId;
use nano_proto::rest::RelayInfo;

use crate::client::{Incoming, Received, Unverifiable};
use crate::error::ClientError;
use crate::inbox::{Inbox, Pushed};

/// What the relay admits, as far as the inbox must know (from its `/relay` info).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Payloads that are not envelopes (test traffic) are reported, not rejected.
    pub(crate) opaque_ok: bool,
    /// Anonymous sends are reported, not rejected.
    pub(crate) anonymous_ok: bool,
    /// The relay's minimum mode: anything below it was forged or damaged on the way.
    pub(crate) floor: CryptoMode,
}

impl From<&RelayInfo> for Policy {
    fn from(r: &RelayInfo) -> Self {
        Self {
            opaque_ok: r.allow_opaque_payloads,
            anonymous_ok: r.allow_anonymous_send,
            floor: r.minimum_crypto_mode,
        }
    }
}

/// What a pushed message is, before any I/O.
#[derive(Debug)]
pub(crate) enum Triage {
    /// Handed to the application before: reported again, and acknowledged again if the
    /// application's ack was lost (`reack`).
    Redelivered { id: MessageId, reack: bool },
    /// Refused on what it shows in the clear.
    Refused(Pushed, ClientError),
    /// Test traffic the relay admits, which cannot be verified.
    Unverifiable(Pushed, Unverifiable),
    /// A session payload from a named sender: needs the sender's trusted bundle, then the
    /// session store.
    Session(Pushed, String),
    /// A sealed envelope (or a notice's) from a named sender whose clear header passed:
    /// needs the sender's trusted bundle, then opening.
    Envelope {
        pushed: Pushed,
        envelope: Envelope,
        sender: String,
        notice: bool,
    },
}

/// Sorts `p` by what it is and what its clear header says, at `now_ms` (ms since the epoch).
pub(crate) fn triage(st: &Inbox, policy: Policy, p: Pushed, now_ms: i64) -> Triage {
    if st.seen.contains(&p.id) {
        return Triage::Redelivered {
            id: p.id,
            reack: st.acked.contains(&p.id),
        };
    }
    // A notice is an envelope behind a type and a mode byte: opened like any envelope. The
    // envelope is parsed once, here; what is no envelope may be a session payload.
    let (bytes, notice) = match nano_proto::notice::unwrap(p.message.as_slice()) {
        Some(inner) => (inner, true),
        None => (p.message.as_slice(), false),
    };
    let Ok(envelope) = Envelope::from_bytes(bytes) else {
        if let Ok(mode) = nano_crypto::session::payload_mode(p.message.as_slice()) {
            return session(p, mode, policy.floor);
        }
        if policy.opaque_ok {
            return Triage::Unverifiable(p, Unverifiable::NotAnEnvelope);
        }
        let sender = p.sender.clone().unwrap_or_else(|| "(anonymous)".into());
        return refuse(p, &sender, "not a sealed envelope".into());
    };
    let Some(sender) = p.sender.clone() else {
        if policy.anonymous_ok {
            return Triage::Unverifiable(p, Unverifiable::Anonymous);
        }
        return refuse(p, "(anonymous)", "no sender to verify".into());
    };
    // What the clear header alone refuses is refused before any signature check or
    // decryption is spent on it.
    if let Some(reason) = header_refusal(envelope.header(), &p, policy.floor, now_ms) {
        return refuse(p, &sender, reason);
    }
    Triage::Envelope {
        pushed: p,
        envelope,
        sender,
        notice,
    }
}

/// A session payload of `mode`: it needs a named sender, at or above the relay's `floor`.
fn session(p: Pushed, mode: CryptoMode, floor: CryptoMode) -> Triage {
    let Some(sender) = p.sender.clone() else {
        return refuse(
            p,
            "(anonymous)",
            "a session message without a sender".into(),
        );
    };
    if mode < floor {
        let reason = format!("a {mode} session, below the relay's minimum {floor}");
        return refuse(p, &sender, reason);
    }
    Triage::Session(p, sender)
}

fn refuse(p: Pushed, sender: &str, reason: String) -> Triage {
    let error = ClientError::Rejected {
        sender: sender.to_owned(),
        reason,
    };
    Triage::Refused(p, error)
}

/// What a failed fetch of `sender`'s bundle means for its message: refused with this error, or
/// `None` when the failure may pass (the message stays in the inbox for the next connection).
pub(crate) fn bundle_failure(sender: &str, e: ClientError) -> Option<ClientError> {
    match e {
        e @ ClientError::ContactKeyChanged { .. } => Some(e),
        e if transient(&e) => None,
        e => Some(ClientError::Rejected {
            sender: sender.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Failures that later attempts may not repeat: the message is left for the next connection.
pub(crate) fn transient(e: &ClientError) -> bool {
    e.is_retryable()
        || matches!(
            e,
            ClientError::Closed
            // A relay that is busy or answering garbage now may answer later: the message
            // stays in the inbox rather than being refused (and acknowledged away). `internal`
            // is a permanent fault of the relay (e.g. a corrupt stored bundle): not retried.
            | ClientError::Protocol(_)
        )
}

/// What an envelope (not a notice) pushed as `p` becomes once opening it was tried: its
/// plaintext from the sender, or rejected; `None` (not tried) is rejected too.
pub(crate) fn opened_envelope(
    p: Pushed,
    header: EnvelopeHeader,
    fingerprint: Fingerprint,
    opened: Option<Result<Vec<u8>, nano_crypto::CryptoError>>,
) -> Incoming {
    let sender = p.sender.clone().unwrap_or_default();
    let reason = match opened {
        Some(Ok(plaintext)) => {
            return Incoming::Message(Received {
                id: p.id,
                sender,
                sender_fingerprint: fingerprint,
                sent_at_ms: header.timestamp_ms,
                timestamp_ms: p.timestamp_ms,
                crypto_mode: header.mode,
                plaintext,
                session: false,
            });
        }
        Some(Err(e)) => e.to_string(),
        None => "not processed".into(),
    };
    Incoming::Rejected {
        id: p.id,
        sender: p.sender,
        error: ClientError::Rejected { sender, reason },
    }
}

/// What becomes of a session payload the session store tried to open.
#[derive(Debug)]
pub(crate) enum SessionOutcome {
    /// Opened: shown to the application (remember its id); `handshake` when it started a
    /// session, so its sender's parked messages are tried again.
    Shown { received: Received, handshake: bool },
    /// The session store failed (this error): nothing shown, the message stays in the inbox.
    Left(ClientError),
    /// No session here opens it yet: it waits (parked) for its handshake.
    Park(Pushed, CryptoMode),
    /// No session here opens it and it may not wait (any longer): reported as lost, and the
    /// sender told with a notice.
    Unreadable(Pushed, CryptoMode),
    /// Refused (remember its id).
    Refused(Incoming),
}

/// What the session store's answer to opening `p` from `sender` means, at `now`.
pub(crate) fn opened_session(
    p: Pushed,
    sender: String,
    opened: Result<(crate::sessions::Opened, Fingerprint), ClientError>,
    now: Instant,
) -> SessionOutcome {
    match opened {
        Ok((o, fingerprint)) => SessionOutcome::Shown {
            handshake: o.handshake,
            received: Received {
                id: p.id,
                sender,
                sender_fingerprint: fingerprint,
                // A session message carries no time of its own: the relay's.
                sent_at_ms: p.timestamp_ms,
                timestamp_ms: p.timestamp_ms,
                crypto_mode: o.mode,
                plaintext: o.plaintext,
                session: true,
            },
        },
        Err(e @ ClientError::Io { .. }) => SessionOutcome::Left(e),
        Err(ClientError::SessionUnknown { mode, .. }) if may_park(&p, now) => {
            SessionOutcome::Park(p, mode)
        }
        Err(ClientError::SessionUnknown { mode, .. }) => SessionOutcome::Unreadable(p, mode),
        Err(error) => SessionOutcome::Refused(Incoming::Rejected {
            id: p.id,
            sender: Some(sender),
            error,
        }),
    }
}

/// Whether a session message that no session held can open may wait for its handshake: a
/// message (a handshake waits for nothing) not parked for [`crate::parked::PARK_FOR`] yet.
fn may_park(p: &Pushed, now: Instant) -> bool {
    p.message.as_slice().first() == Some(&nano_crypto::session::TYPE_MESSAGE)
        && p.parked_since
            .is_none_or(|since| now.saturating_duration_since(since) < crate::parked::PARK_FOR)
}

/// Why an envelope pushed as `p` is refused on its clear header alone, if it is: its id is not
/// the one the relay delivered it under, its mode is below the relay's `floor`, or its time is
/// outside the replay window.
fn header_refusal(
    header: &EnvelopeHeader,
    p: &Pushed,
    floor: CryptoMode,
    now_ms: i64,
) -> Option<String> {
    if header.message_id != p.id.0 {
        return Some("the relay's message id differs from the sealed one".into());
    }
    if header.mode < floor {
        return Some(format!(
            "sealed in {}, below the relay's minimum {floor}",
            header.mode
        ));
    }
    freshness(header.timestamp_ms, now_ms)
}

/// Why an envelope sealed at `sealed_ms` (its authenticated header time) is outside the replay
/// window at `now_ms`, if it is: older than [`nano_proto::REPLAY_WINDOW_MS`] (a replay the
/// relay no longer remembers) or later than [`nano_proto::CLOCK_SKEW_MS`] ahead.
fn freshness(sealed_ms: u64, now_ms: i64) -> Option<String> {
    let sealed = i64::try_from(sealed_ms).unwrap_or(i64::MAX);
    if sealed < now_ms.saturating_sub(nano_proto::REPLAY_WINDOW_MS) {
        Some("sealed more than 30 days ago: outside the replay window".into())
    } else if sealed > now_ms.saturating_add(nano_proto::CLOCK_SKEW_MS) {
        Some("dated more than 10 minutes in the future".into())
    } else {
        None
    }
}

#[cfg(test)]
#[path = "triage_tests.rs"]
mod tests;
