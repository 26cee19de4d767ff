//! The inbox's decisions, fed with pushed messages and fetch outcomes, no socket involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use nano_crypto::session::{OneTimePrekeys, PrekeySecrets, Session, SignedPrekeySecrets};
use nano_crypto::{AeadId, CryptoMode, Identity};
use nano_proto::{MessageId, Payload};
use rand_core::OsRng;

use super::*;

const NOW_MS: i64 = 1_800_000_000_000;

/// Alice and Bob, with keys of every mode.
fn people() -> &'static (Identity, Identity) {
    static P: OnceLock<(Identity, Identity)> = OnceLock::new();
    P.get_or_init(|| {
        let a = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
        let b = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
        (a, b)
    })
}

/// A classical envelope from Alice to Bob, sealed at `at_ms`; its id.
fn envelope(at_ms: u64) -> (Vec<u8>, MessageId) {
    let (alice, bob) = people();
    let params = nano_crypto::envelope::SealParams {
        mode: CryptoMode::Classical,
        aead: AeadId::ChaCha20Poly1305,
        message_id: [7; 16],
        timestamp_ms: at_ms,
    };
    let bytes =
        nano_crypto::envelope::seal_with(alice, bob.public_bundle(), b"hi", params, &mut OsRng)
            .unwrap();
    (bytes, MessageId([7; 16]))
}

/// A classical session handshake from Alice to Bob.
fn handshake() -> Vec<u8> {
    let (alice, bob) = people();
    let mode = CryptoMode::Classical;
    let signed = SignedPrekeySecrets::generate(mode, 1, &mut OsRng).unwrap();
    let batch = OneTimePrekeys::generate(mode, 1, 1, &mut OsRng).unwrap();
    let secrets = PrekeySecrets::new(signed, batch).unwrap();
    let bundle = secrets.bundle(bob, false, &mut OsRng).unwrap();
    let (_, wire) = Session::initiate(
        alice,
        bob.public_bundle(),
        &bundle,
        AeadId::ChaCha20Poly1305,
        b"hi",
        &mut OsRng,
    )
    .unwrap();
    wire
}

fn pushed(id: MessageId, sender: Option<&str>, message: Vec<u8>) -> Pushed {
    Pushed {
        id,
        sender: sender.map(str::to_owned),
        timestamp_ms: 1,
        message: Payload(message),
        parked_since: None,
    }
}

const STRICT: Policy = Policy {
    opaque_ok: false,
    anonymous_ok: false,
    floor: CryptoMode::Classical,
};
const LENIENT: Policy = Policy {
    opaque_ok: true,
    anonymous_ok: true,
    floor: CryptoMode::Classical,
};

fn reason(t: &Triage) -> &str {
    match t {
        Triage::Refused(_, ClientError::Rejected { reason, .. }) => reason,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_message_shown_before_is_redelivered_and_acked_again_only_if_acked() {
    let (bytes, id) = envelope(NOW_MS as u64);
    let mut st = Inbox::default();
    st.seen.insert(&id);
    let t = triage(
        &st,
        STRICT,
        pushed(id, Some("alice"), bytes.clone()),
        NOW_MS,
    );
    assert!(
        matches!(t, Triage::Redelivered { reack: false, .. }),
        "{t:?}"
    );
    st.acked.insert(&id);
    let t = triage(&st, STRICT, pushed(id, Some("alice"), bytes), NOW_MS);
    assert!(
        matches!(t, Triage::Redelivered { reack: true, .. }),
        "{t:?}"
    );
}

#[test]
fn a_payload_that_is_no_envelope_is_test_traffic_only_where_the_relay_admits_it() {
    let p = || pushed(MessageId([1; 16]), Some("alice"), b"plain text".to_vec());
    let t = triage(&Inbox::default(), STRICT, p(), NOW_MS);
    assert_eq!(reason(&t), "not a sealed envelope");
    let t = triage(&Inbox::default(), LENIENT, p(), NOW_MS);
    assert!(
        matches!(t, Triage::Unverifiable(_, Unverifiable::NotAnEnvelope)),
        "{t:?}"
    );
}

#[test]
fn an_anonymous_envelope_is_unverifiable_or_refused() {
    let (bytes, id) = envelope(NOW_MS as u64);
    let t = triage(
        &Inbox::default(),
        STRICT,
        pushed(id, None, bytes.clone()),
        NOW_MS,
    );
    assert_eq!(reason(&t), "no sender to verify");
    let t = triage(&Inbox::default(), LENIENT, pushed(id, None, bytes), NOW_MS);
    assert!(
        matches!(t, Triage::Unverifiable(_, Unverifiable::Anonymous)),
        "{t:?}"
    );
}

#[test]
fn an_envelope_is_refused_on_its_clear_header_before_any_fetch() {
    let (bytes, id) = envelope(NOW_MS as u64);
    let inbox = Inbox::default();
    // Delivered under another id than the sealed one.
    let t = triage(
        &inbox,
        STRICT,
        pushed(MessageId([8; 16]), Some("alice"), bytes.clone()),
        NOW_MS,
    );
    assert!(reason(&t).contains("message id differs"), "{t:?}");
    // Below the relay's floor.
    let hybrid_floor = Policy {
        floor: CryptoMode::Hybrid,
        ..STRICT
    };
    let t = triage(
        &inbox,
        hybrid_floor,
        pushed(id, Some("alice"), bytes.clone()),
        NOW_MS,
    );
    assert!(reason(&t).contains("below the relay's minimum"), "{t:?}");
    // Outside the replay window, either side.
    let late = NOW_MS + nano_proto::REPLAY_WINDOW_MS + 1;
    let t = triage(
        &inbox,
        STRICT,
        pushed(id, Some("alice"), bytes.clone()),
        late,
    );
    assert!(reason(&t).contains("replay window"), "{t:?}");
    let early = NOW_MS - nano_proto::CLOCK_SKEW_MS - 1;
    let t = triage(&inbox, STRICT, pushed(id, Some("alice"), bytes), early);
    assert!(reason(&t).contains("in the future"), "{t:?}");
}

#[test]
fn an_envelope_or_a_notice_that_passes_needs_its_senders_bundle() {
    let (bytes, id) = envelope(NOW_MS as u64);
    let inbox = Inbox::default();
    match triage(
        &inbox,
        STRICT,
        pushed(id, Some("alice"), bytes.clone()),
        NOW_MS,
    ) {
        Triage::Envelope { sender, notice, .. } => {
            assert_eq!(sender, "alice");
            assert!(!notice);
        }
        other => panic!("{other:?}"),
    }
    let wrapped = nano_proto::notice::wrap(CryptoMode::Classical, &bytes);
    match triage(&inbox, STRICT, pushed(id, Some("alice"), wrapped), NOW_MS) {
        Triage::Envelope { notice, .. } => assert!(notice),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_payload_needs_a_sender_at_or_above_the_floor() {
    let wire = handshake();
    let id = MessageId([2; 16]);
    let inbox = Inbox::default();
    match triage(
        &inbox,
        STRICT,
        pushed(id, Some("alice"), wire.clone()),
        NOW_MS,
    ) {
        Triage::Session(_, sender) => assert_eq!(sender, "alice"),
        other => panic!("{other:?}"),
    }
    // Anonymous session traffic is refused even where anonymous sends are admitted.
    let t = triage(&inbox, LENIENT, pushed(id, None, wire.clone()), NOW_MS);
    assert_eq!(reason(&t), "a session message without a sender");
    let quantum_floor = Policy {
        floor: CryptoMode::Quantum,
        ..STRICT
    };
    let t = triage(
        &inbox,
        quantum_floor,
        pushed(id, Some("alice"), wire),
        NOW_MS,
    );
    assert!(
        reason(&t).contains("below the relay's minimum quantum"),
        "{t:?}"
    );
}

#[test]
fn a_failed_bundle_fetch_refuses_or_leaves_the_message() {
    let changed = ClientError::ContactKeyChanged {
        name: "alice".into(),
        pinned: "aa".into(),
        now: "bb".into(),
    };
    assert!(matches!(
        bundle_failure("alice", changed),
        Some(ClientError::ContactKeyChanged { .. })
    ));
    // What may pass leaves the message in the inbox.
    assert!(bundle_failure("alice", ClientError::Closed).is_none());
    assert!(bundle_failure("alice", ClientError::Timeout("fetching")).is_none());
    assert!(bundle_failure("alice", ClientError::Protocol("garbled".into())).is_none());
    // What will not pass refuses it, naming the sender.
    match bundle_failure("alice", ClientError::WrongPassphrase) {
        Some(ClientError::Rejected { sender, .. }) => assert_eq!(sender, "alice"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_opened_envelope_is_the_message_or_a_rejection() {
    let (bytes, id) = envelope(NOW_MS as u64);
    let env = Envelope::from_bytes(&bytes).unwrap();
    let header = *env.header();
    let fingerprint = people().0.fingerprint();
    let p = || pushed(id, Some("alice"), bytes.clone());
    match opened_envelope(p(), header, fingerprint, Some(Ok(b"hi".to_vec()))) {
        Incoming::Message(m) => {
            assert_eq!(m.plaintext, b"hi");
            assert_eq!(m.sender, "alice");
            assert_eq!(m.sent_at_ms, NOW_MS as u64);
            assert_eq!(m.timestamp_ms, 1);
            assert!(!m.session);
        }
        other => panic!("{other:?}"),
    }
    let failed = Some(Err(nano_crypto::CryptoError::Decryption));
    assert!(matches!(
        opened_envelope(p(), header, fingerprint, failed),
        Incoming::Rejected {
            error: ClientError::Rejected { .. },
            ..
        }
    ));
    match opened_envelope(p(), header, fingerprint, None) {
        Incoming::Rejected {
            error: ClientError::Rejected { reason, .. },
            ..
        } => assert_eq!(reason, "not processed"),
        other => panic!("{other:?}"),
    }
}

fn unknown(mode: CryptoMode) -> Result<(crate::sessions::Opened, Fingerprint), ClientError> {
    Err(ClientError::SessionUnknown {
        sender: "alice".into(),
        mode,
    })
}

#[test]
fn an_opened_session_payload_is_shown_with_the_relays_time() {
    let now = std::time::Instant::now();
    let p = pushed(MessageId([3; 16]), Some("alice"), handshake());
    let opened = crate::sessions::Opened {
        plaintext: b"hi".to_vec(),
        mode: CryptoMode::Classical,
        handshake: true,
    };
    let fingerprint = people().0.fingerprint();
    match opened_session(p, "alice".into(), Ok((opened, fingerprint)), now) {
        SessionOutcome::Shown {
            received: m,
            handshake,
        } => {
            assert!(handshake);
            assert!(m.session);
            assert_eq!(m.plaintext, b"hi");
            assert_eq!(m.id, MessageId([3; 16]));
            assert_eq!((m.sent_at_ms, m.timestamp_ms), (1, 1));
            assert_eq!(m.sender_fingerprint, fingerprint);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_message_without_its_session_waits_then_is_lost() {
    let now = std::time::Instant::now();
    let message = vec![nano_crypto::session::TYPE_MESSAGE; 40];
    let p = || pushed(MessageId([4; 16]), Some("alice"), message.clone());
    // First seen: it may be ahead of its handshake.
    let t = opened_session(p(), "alice".into(), unknown(CryptoMode::Hybrid), now);
    assert!(
        matches!(t, SessionOutcome::Park(_, CryptoMode::Hybrid)),
        "{t:?}"
    );
    // Parked a little while: still waits.
    let mut waited = p();
    waited.parked_since = Some(now);
    let later = now + crate::parked::PARK_FOR / 2;
    let t = opened_session(waited, "alice".into(), unknown(CryptoMode::Hybrid), later);
    assert!(matches!(t, SessionOutcome::Park(..)), "{t:?}");
    // Parked for its whole wait: lost.
    let mut waited = p();
    waited.parked_since = Some(now);
    let later = now + crate::parked::PARK_FOR;
    let t = opened_session(waited, "alice".into(), unknown(CryptoMode::Hybrid), later);
    assert!(
        matches!(t, SessionOutcome::Unreadable(_, CryptoMode::Hybrid)),
        "{t:?}"
    );
    // A handshake waits for nothing.
    let hs = pushed(MessageId([5; 16]), Some("alice"), handshake());
    let t = opened_session(hs, "alice".into(), unknown(CryptoMode::Classical), now);
    assert!(matches!(t, SessionOutcome::Unreadable(..)), "{t:?}");
}

#[test]
fn a_failed_store_leaves_the_message_and_other_failures_refuse_it() {
    let now = std::time::Instant::now();
    let p = || pushed(MessageId([6; 16]), Some("alice"), handshake());
    let io = ClientError::Io {
        path: "sessions".into(),
        reason: "disk full".into(),
    };
    let t = opened_session(p(), "alice".into(), Err(io), now);
    assert!(
        matches!(t, SessionOutcome::Left(ClientError::Io { .. })),
        "{t:?}"
    );
    let bad = ClientError::Rejected {
        sender: "alice".into(),
        reason: "decrypt_failed".into(),
    };
    match opened_session(p(), "alice".into(), Err(bad), now) {
        SessionOutcome::Refused(Incoming::Rejected { id, sender, .. }) => {
            assert_eq!(id, MessageId([6; 16]));
            assert_eq!(sender.as_deref(), Some("alice"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_replay_window_is_30_days_back_and_10_minutes_ahead() {
    let now = NOW_MS;
    let at = |ms: i64| u64::try_from(ms).unwrap_or(0);
    assert_eq!(freshness(at(now), now), None);
    assert_eq!(freshness(at(now - nano_proto::REPLAY_WINDOW_MS), now), None);
    assert!(freshness(at(now - nano_proto::REPLAY_WINDOW_MS - 1), now).is_some());
    assert_eq!(freshness(at(now + nano_proto::CLOCK_SKEW_MS), now), None);
    assert!(freshness(at(now + nano_proto::CLOCK_SKEW_MS + 1), now).is_some());
    assert!(freshness(0, now).is_some());
    assert!(freshness(u64::MAX, now).is_some());
}
