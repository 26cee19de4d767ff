//! What a `send_message` payload is. The relay cannot read a message, but it can read the clear
//! header of a sealed envelope (PROTOCOL.md §6), and it judges a send by that header, never by
//! the frame's unauthenticated labels: the envelope's `message_id` is the message's id and its
//! mode byte is the mode the relay's floor is enforced on (PROTOCOL.md §11, "send_message").
//!
//! A session handshake or session message (PROTOCOL.md §14) is judged by its clear header the
//! same way: its mode byte is the mode; it carries no message id, so its id is derived from its
//! bytes (`Payload::session_message_id`), and a resend is stored once.
//!
//! A session notice (§14.14) is an envelope behind a type byte and its mode byte, judged by
//! that envelope's header.
//!
//! A payload that is none of these (the performance guide's load test sends plain text) is accepted
//! only where `security.allow_opaque_payloads` says so, and reaches its recipient marked as what
//! it is.

use nano_crypto::{CryptoMode, OsRng};
use nano_proto::{MessageId, Payload, PayloadKind};
use rand_core::RngCore;

use crate::error::RelayError;

/// What the relay stores a send as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judged {
    /// The message id: the envelope's `message_id`, a session payload's derived id, or for an
    /// opaque payload the frame's `id` (a random one when absent).
    pub id: MessageId,
    /// The mode: the envelope's or session payload's mode byte, or for an opaque payload the
    /// frame's label.
    pub mode: CryptoMode,
    /// Whether the payload is a well-formed sealed envelope or session payload.
    pub sealed: bool,
}

/// Judges a `send_message` by its payload.
///
/// # Errors
/// - [`RelayError::IdMismatch`] when `id` is given and differs from the payload's id;
/// - [`RelayError::ModeMismatch`] when `label` differs from the payload's mode byte;
/// - [`RelayError::NotAnEnvelope`] when the payload is neither a well-formed envelope (§6
///   lengths, no trailing bytes) nor a session payload (§14), and `opaque_allowed` is false.
pub(crate) fn judge(
    message: &Payload,
    label: CryptoMode,
    id: Option<MessageId>,
    opaque_allowed: bool,
) -> Result<Judged, RelayError> {
    let (own_id, mode) = match message.kind() {
        PayloadKind::Sealed { id, mode } | PayloadKind::Notice { id, mode } => (id, mode),
        PayloadKind::Session { mode } => (message.session_message_id(), mode),
        PayloadKind::Opaque if opaque_allowed => {
            return Ok(Judged {
                id: id.unwrap_or_else(random_id),
                mode: label,
                sealed: false,
            });
        }
        PayloadKind::Opaque => return Err(RelayError::NotAnEnvelope),
    };
    if id.is_some_and(|i| i != own_id) {
        return Err(RelayError::IdMismatch);
    }
    if label != mode {
        return Err(RelayError::ModeMismatch {
            label,
            sealed: mode,
        });
    }
    Ok(Judged {
        id: own_id,
        mode,
        sealed: true,
    })
}

fn random_id() -> MessageId {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    MessageId(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nano_crypto::{AeadId, Envelope, Identity};

    fn sealed(mode: CryptoMode) -> (Payload, MessageId) {
        let a = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
        let b = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
        let env = nano_crypto::seal(&a, b.public_bundle(), b"hi", mode, AeadId::Aes256Gcm).unwrap();
        let id = MessageId(Envelope::from_bytes(&env).unwrap().header().message_id);
        (Payload(env), id)
    }

    #[test]
    fn an_envelope_is_judged_by_its_header() {
        for mode in CryptoMode::ALL {
            let (msg, id) = sealed(mode);
            let j = judge(&msg, mode, None, false).unwrap();
            assert_eq!(
                j,
                Judged {
                    id,
                    mode,
                    sealed: true
                }
            );
            assert_eq!(judge(&msg, mode, Some(id), false).unwrap().id, id);
        }
    }

    #[test]
    fn a_notice_is_judged_by_its_envelope() {
        for mode in CryptoMode::ALL {
            let (env, id) = sealed(mode);
            let msg = Payload(nano_proto::notice::wrap(mode, env.as_slice()));
            assert_eq!(
                judge(&msg, mode, None, false),
                Ok(Judged {
                    id,
                    mode,
                    sealed: true
                })
            );
            assert_eq!(
                judge(&msg, mode, Some(MessageId([9; 16])), false),
                Err(RelayError::IdMismatch)
            );
        }
        // The notice bytes before anything but an envelope of their mode are opaque.
        let junk = Payload(nano_proto::notice::wrap(CryptoMode::Hybrid, &[1, 2, 3]));
        assert_eq!(
            judge(&junk, CryptoMode::Hybrid, None, false),
            Err(RelayError::NotAnEnvelope)
        );
        let (env, _) = sealed(CryptoMode::Classical);
        let other = Payload(nano_proto::notice::wrap(CryptoMode::Hybrid, env.as_slice()));
        assert_eq!(
            judge(&other, CryptoMode::Hybrid, None, false),
            Err(RelayError::NotAnEnvelope)
        );
    }

    #[test]
    fn a_label_or_id_that_disagrees_with_the_header_is_refused() {
        let (msg, id) = sealed(CryptoMode::Classical);
        assert_eq!(
            judge(&msg, CryptoMode::Hybrid, Some(id), true),
            Err(RelayError::ModeMismatch {
                label: CryptoMode::Hybrid,
                sealed: CryptoMode::Classical
            })
        );
        let other = MessageId([7; 16]);
        assert_eq!(
            judge(&msg, CryptoMode::Classical, Some(other), true),
            Err(RelayError::IdMismatch)
        );
    }

    #[test]
    fn opaque_payloads_only_where_allowed() {
        for text in ["hello", "", "AQ==", "not base64!"] {
            let text = &Payload(text.as_bytes().to_vec());
            assert_eq!(
                judge(text, CryptoMode::Hybrid, None, false),
                Err(RelayError::NotAnEnvelope)
            );
            let j = judge(text, CryptoMode::Hybrid, Some(MessageId([1; 16])), true).unwrap();
            assert_eq!(
                j,
                Judged {
                    id: MessageId([1; 16]),
                    mode: CryptoMode::Hybrid,
                    sealed: false
                }
            );
        }
        // A truncated envelope is not an envelope.
        let (msg, _) = sealed(CryptoMode::Classical);
        let cut = &Payload(msg.0[..msg.len() - 8].to_vec());
        assert_eq!(
            judge(cut, CryptoMode::Classical, None, false),
            Err(RelayError::NotAnEnvelope)
        );
    }

    /// A session handshake and a session message of every mode.
    fn session_payloads(mode: CryptoMode) -> [Payload; 2] {
        use nano_crypto::session::{
            OneTimePrekeys, PrekeyBundle, PrekeySecrets, Session, SignedPrekeySecrets,
        };
        let mut r = OsRng;
        let a = Identity::generate(mode, &mut r).unwrap();
        let b = Identity::generate(mode, &mut r).unwrap();
        let signed = SignedPrekeySecrets::generate(mode, 1, &mut r).unwrap();
        let bundle = PrekeyBundle::new(signed.certify(&b, None, &mut r).unwrap(), None).unwrap();
        let mut secrets = PrekeySecrets::new(signed, OneTimePrekeys::empty(mode)).unwrap();
        let (mut s, hs) = Session::initiate(
            &a,
            b.public_bundle(),
            &bundle,
            AeadId::Aes256Gcm,
            b"hi",
            &mut r,
        )
        .unwrap();
        Session::respond(&b, &mut secrets, a.public_bundle(), &hs, &mut r).unwrap();
        let m = s.encrypt(b"again", &mut r).unwrap();
        [Payload(hs), Payload(m)]
    }

    #[test]
    fn a_session_payload_is_judged_by_its_mode_byte() {
        for mode in CryptoMode::ALL {
            for msg in session_payloads(mode) {
                // The id is the payload's own, whether or not the frame names it.
                let id = msg.session_message_id();
                for named in [None, Some(id)] {
                    assert_eq!(
                        judge(&msg, mode, named, false).unwrap(),
                        Judged {
                            id,
                            mode,
                            sealed: true
                        }
                    );
                }
                assert_eq!(
                    judge(&msg, mode, Some(MessageId([3; 16])), false),
                    Err(RelayError::IdMismatch)
                );
                let other = if mode == CryptoMode::Quantum {
                    CryptoMode::Classical
                } else {
                    CryptoMode::Quantum
                };
                assert_eq!(
                    judge(&msg, other, Some(id), false),
                    Err(RelayError::ModeMismatch {
                        label: other,
                        sealed: mode
                    })
                );
                // Cut short, it is no session payload at all.
                let cut = Payload(msg.0[..msg.len() - 17].to_vec());
                assert_eq!(
                    judge(&cut, mode, Some(id), false),
                    Err(RelayError::NotAnEnvelope)
                );
            }
        }
    }
}
