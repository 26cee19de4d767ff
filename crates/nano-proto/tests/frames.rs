//! Frames: the guide's frames as written, JSON ↔ binary equivalence, and hostile input mapped to
//! stable codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nano_crypto::CryptoMode;
use nano_proto::{
    BindingKind, Bytes, ClientFrame, ErrorCode, MessageId, Payload, PrekeyCounts, RelayFrame,
    Username,
};
use proptest::prelude::*;

fn user(s: &str) -> Username {
    Username::new(s).unwrap()
}

#[test]
fn guide_frames_parse_as_written() {
    let f = ClientFrame::from_json(
        r#"{
                  "type": "send_message",
                  "recipient": "user_42",
                  "message": "Load test message 1764000000000",
                  "crypto_mode": "hybrid"
                }"#,
    )
    .unwrap();
    assert_eq!(
        f,
        ClientFrame::SendMessage {
            recipient: user("user_42"),
            message: Payload(b"Load test message 1764000000000".to_vec()),
            crypto_mode: CryptoMode::Hybrid,
            id: None,
        }
    );
    let k = ClientFrame::from_json(r#"{"type":"key_exchange","crypto_mode":"hybrid"}"#).unwrap();
    assert_eq!(
        k,
        ClientFrame::KeyExchange {
            crypto_mode: CryptoMode::Hybrid,
            key_id: None,
            ciphertext: None
        }
    );
}

fn code_of(json: &str) -> ErrorCode {
    ClientFrame::from_json(json).expect_err(json).code()
}

#[test]
fn hostile_json_gets_stable_codes() {
    let id = "ab".repeat(16);
    let many_ids = format!(
        r#"{{"type":"ack","ids":[{}]}}"#,
        vec![format!("\"{id}\""); 1025].join(",")
    );
    let huge = format!(
        r#"{{"type":"send_message","recipient":"u","message":"{}","crypto_mode":"hybrid"}}"#,
        "x".repeat(nano_proto::MAX_MESSAGE_JSON_LEN + 1)
    );
    let too_many_prekeys = format!(
        r#"{{"type":"upload_prekeys","crypto_mode":"hybrid","one_time_prekeys":[{}]}}"#,
        vec!["\"AQ==\""; 26].join(",")
    );
    let cases: Vec<(String, ErrorCode)> = vec![
        ("".into(), ErrorCode::MalformedFrame),
        ("{".into(), ErrorCode::MalformedFrame),
        ("not json".into(), ErrorCode::MalformedFrame),
        ("[]".into(), ErrorCode::MalformedFrame),
        ("42".into(), ErrorCode::MalformedFrame),
        (r#"{"recipient":"u"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":7}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"launch_missiles"}"#.into(), ErrorCode::UnknownType),
        (r#"{"type":"challenge","nonce":"","relay_id":""}"#.into(), ErrorCode::UnknownType),
        (r#"{"type":"send_message","recipient":"u","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"send_message","recipient":"u","message":1,"crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"send_message","recipient":"bad name","message":"m","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"send_message","recipient":"u","message":"m","crypto_mode":"post-quantum"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"send_message","recipient":"u","message":"m","crypto_mode":"hybrid","extra":1}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"send_message","recipient":"u","message":"m","crypto_mode":"hybrid","id":"xyz"}"#.into(), ErrorCode::InvalidField),
        (huge, ErrorCode::MessageTooLarge),
        (r#"{"type":"ack","ids":[]}"#.into(), ErrorCode::InvalidField),
        (many_ids, ErrorCode::InvalidField),
        (r#"{"type":"ack","ids":"all"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"fetch","limit":0}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"fetch","limit":501}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"key_exchange","crypto_mode":"hybrid","key_id":9007199254740992,"ciphertext":""}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"ack","ids":["ABABABABABABABABABABABABABABABAB"]}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"fetch","limit":-1}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"fetch","after":18446744073709551616}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"key_exchange","crypto_mode":"hybrid","key_id":1}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"key_exchange","crypto_mode":"hybrid","ciphertext":"%%%"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"auth","username":"u","crypto_mode":"hybrid","signature":"@@"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"upload_prekeys","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"upload_prekeys","crypto_mode":"hybrid","one_time_prekeys":[]}"#.into(), ErrorCode::InvalidField),
        (too_many_prekeys, ErrorCode::InvalidField),
        (r#"{"type":"get_prekeys","username":"bad name","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_prekeys","username":"u"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_contact","username":"bad name","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_contact","username":"u","crypto_mode":"hybrid","extra":1}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_identity","username":"bad name"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_identity"}"#.into(), ErrorCode::InvalidField),
        (r#"{"type":"get_identity","username":"u","crypto_mode":"hybrid"}"#.into(), ErrorCode::InvalidField),
    ];
    // Every code a frame decoder can give is exercised.
    for want in [
        ErrorCode::MalformedFrame,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::MessageTooLarge,
    ] {
        assert!(cases.iter().any(|(_, c)| *c == want), "no case for {want}");
    }
    for (json, code) in &cases {
        assert_eq!(code_of(json), *code, "{}", &json[..json.len().min(80)]);
    }
}

#[test]
fn error_messages_do_not_echo_content() {
    let secret = "very-secret-payload-123";
    let json = format!(
        r#"{{"type":"send_message","recipient":"u","message":{{"x":"{secret}"}},"crypto_mode":"hybrid"}}"#
    );
    let err = ClientFrame::from_json(&json).unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    let bad_type = format!(r#"{{"type":"{secret}"}}"#);
    // The unknown type is named (truncated) — it is the client's own word for the frame.
    assert_eq!(
        ClientFrame::from_json(&bad_type).unwrap_err().code(),
        ErrorCode::UnknownType
    );
}

#[test]
fn invalid_frames_cannot_be_encoded() {
    let challenge = |nonce: usize, relay_id: String| RelayFrame::Challenge {
        nonce: Bytes(vec![0; nonce]),
        relay_id,
        crypto_mode: CryptoMode::Hybrid,
        channel_binding: BindingKind::TlsExporter,
        signature: Bytes(vec![1; 64]),
    };
    let too_long = challenge(31, "ab".repeat(32));
    assert_eq!(
        too_long.to_binary().unwrap_err().code(),
        ErrorCode::InvalidField
    );
    assert!(too_long.to_json().is_err());
    let bad_id = challenge(32, "x".repeat(300));
    assert!(bad_id.to_binary().is_err());
    for n in [0, 31, 33] {
        let hello = ClientFrame::Hello {
            crypto_mode: CryptoMode::Quantum,
            nonce: Bytes(vec![5; n]),
        };
        assert_eq!(hello.to_json().unwrap_err().code(), ErrorCode::InvalidField);
        assert!(hello.to_binary().is_err());
    }
    let huge = Bytes(vec![0; nano_proto::MAX_FIELD_BYTES + 1]);
    let f = ClientFrame::Auth {
        username: user("a"),
        crypto_mode: CryptoMode::Hybrid,
        signature: huge,
    };
    assert!(f.to_binary().is_err() && f.to_json().is_err());
    // Error frames built from any error fit the limit.
    let long = nano_proto::ProtoError::Malformed("é".repeat(4000));
    let e = RelayFrame::error(&long, None);
    assert!(e.to_binary().is_ok());
}

#[test]
fn hostile_binary_gets_stable_codes() {
    let good = ClientFrame::SendMessage {
        recipient: user("bob"),
        message: Payload(b"hi".to_vec()),
        crypto_mode: CryptoMode::Quantum,
        id: Some(MessageId([7; 16])),
    }
    .to_binary()
    .unwrap();
    refuses_cut_and_trailing(&good, ClientFrame::from_binary);
    assert_eq!(
        ClientFrame::from_binary(&[0x7f]).unwrap_err().code(),
        ErrorCode::UnknownType
    );
    assert_eq!(
        ClientFrame::from_binary(&[0x81]).unwrap_err().code(),
        ErrorCode::UnknownType
    );
    // Bad UTF-8 in the recipient.
    assert_eq!(
        ClientFrame::from_binary(&[0x02, 1, 0xff])
            .unwrap_err()
            .code(),
        ErrorCode::MalformedFrame
    );
    // A message length far beyond the cap is refused before any allocation.
    let mut big = vec![0x02, 1, b'b'];
    big.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        ClientFrame::from_binary(&big).unwrap_err().code(),
        ErrorCode::MessageTooLarge
    );
    // Unknown mode byte, bad flag byte, too many ids.
    assert_eq!(
        ClientFrame::from_binary(&[0x06, 9, 0, 0])
            .unwrap_err()
            .code(),
        ErrorCode::InvalidField
    );
    assert_eq!(
        ClientFrame::from_binary(&[0x05, 2]).unwrap_err().code(),
        ErrorCode::MalformedFrame
    );
    assert_eq!(
        ClientFrame::from_binary(&[0x03, 0xff, 0xff])
            .unwrap_err()
            .code(),
        ErrorCode::InvalidField
    );
    assert_eq!(
        ClientFrame::from_binary(&[0x03, 0, 0]).unwrap_err().code(),
        ErrorCode::InvalidField
    );
}

#[test]
fn get_contact_and_contact_have_the_documented_layout() {
    let mode = CryptoMode::Hybrid.to_byte();
    let ask = ClientFrame::GetContact {
        username: user("bob"),
        crypto_mode: CryptoMode::Hybrid,
    };
    assert_eq!(ask.to_binary().unwrap(), [0x0a, 3, b'b', b'o', b'b', mode]);
    assert_eq!(
        ask.to_json().unwrap(),
        r#"{"type":"get_contact","username":"bob","crypto_mode":"hybrid"}"#
    );
    let with = RelayFrame::Contact {
        username: user("bob"),
        crypto_mode: CryptoMode::Hybrid,
        identity: Bytes(vec![0xaa, 0xbb]),
        bundle: Some(Bytes(vec![0xcc])),
    };
    let wire = [
        0x8b, 3, b'b', b'o', b'b', mode, 0, 2, 0xaa, 0xbb, 1, 0, 1, 0xcc,
    ];
    assert_eq!(with.to_binary().unwrap(), wire);
    assert_eq!(RelayFrame::from_binary(&wire).unwrap(), with);
    let without = RelayFrame::Contact {
        username: user("bob"),
        crypto_mode: CryptoMode::Hybrid,
        identity: Bytes(vec![0xaa, 0xbb]),
        bundle: None,
    };
    assert_eq!(
        without.to_binary().unwrap(),
        [0x8b, 3, b'b', b'o', b'b', mode, 0, 2, 0xaa, 0xbb, 0]
    );
    // JSON leaves an absent prekey bundle out.
    assert_eq!(
        without.to_json().unwrap(),
        r#"{"type":"contact","username":"bob","crypto_mode":"hybrid","identity":"qrs="}"#
    );
    refuses_cut_and_trailing(&wire, RelayFrame::from_binary);
}

/// Every prefix of the binary frame `wire` is refused, and so is `wire` with a byte after its
/// last field (`malformed_frame`).
fn refuses_cut_and_trailing<F: std::fmt::Debug>(
    wire: &[u8],
    decode: impl Fn(&[u8]) -> Result<F, nano_proto::ProtoError>,
) {
    for n in 0..wire.len() {
        assert!(decode(&wire[..n]).is_err(), "prefix {n}");
    }
    let mut trailing = wire.to_vec();
    trailing.push(0);
    assert_eq!(
        decode(&trailing).unwrap_err().code(),
        ErrorCode::MalformedFrame
    );
}

#[test]
fn get_identity_and_identity_bundle_have_the_documented_layout() {
    let ask = ClientFrame::GetIdentity {
        username: user("bob"),
    };
    assert_eq!(ask.to_binary().unwrap(), [0x0b, 3, b'b', b'o', b'b']);
    assert_eq!(
        ask.to_json().unwrap(),
        r#"{"type":"get_identity","username":"bob"}"#
    );
    let answer = RelayFrame::IdentityBundle {
        username: user("bob"),
        bundle: Bytes(vec![0xaa, 0xbb]),
    };
    let wire = [0x8c, 3, b'b', b'o', b'b', 0, 2, 0xaa, 0xbb];
    assert_eq!(answer.to_binary().unwrap(), wire);
    assert_eq!(RelayFrame::from_binary(&wire).unwrap(), answer);
    assert_eq!(
        answer.to_json().unwrap(),
        r#"{"type":"identity_bundle","username":"bob","bundle":"qrs="}"#
    );
    // Cut short, or with a byte after the last field, it is malformed.
    refuses_cut_and_trailing(&wire, RelayFrame::from_binary);
    refuses_cut_and_trailing(&ask.to_binary().unwrap(), ClientFrame::from_binary);
}

fn any_payload() -> impl Strategy<Value = Payload> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Payload)
}

fn any_mode() -> impl Strategy<Value = CryptoMode> {
    prop::sample::select(CryptoMode::ALL.to_vec())
}

fn any_user() -> impl Strategy<Value = Username> {
    "[a-z0-9][a-z0-9_.-]{0,20}".prop_map(|s| Username::new(&s).unwrap())
}

fn any_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId)
}

fn any_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes)
}

fn any_client() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any_mode(), any::<[u8; 32]>()).prop_map(|(crypto_mode, n)| ClientFrame::Hello {
            crypto_mode,
            nonce: Bytes(n.to_vec()),
        }),
        (any_user(), any_mode(), any_bytes()).prop_map(|(username, crypto_mode, signature)| {
            ClientFrame::Auth {
                username,
                crypto_mode,
                signature,
            }
        }),
        (
            any_user(),
            any_payload(),
            any_mode(),
            prop::option::of(any_id())
        )
            .prop_map(
                |(recipient, message, crypto_mode, id)| ClientFrame::SendMessage {
                    recipient,
                    message,
                    crypto_mode,
                    id
                }
            ),
        prop::collection::vec(any_id(), 1..20).prop_map(|ids| ClientFrame::Ack { ids }),
        prop::collection::vec(any_id(), 1..20).prop_map(|ids| ClientFrame::Read { ids }),
        (prop::option::of(any::<u64>()), prop::option::of(1u32..=500))
            .prop_map(|(after, limit)| ClientFrame::Fetch { after, limit }),
        (
            any_mode(),
            prop::option::of((0..=nano_proto::frames::MAX_SAFE_INTEGER, any_bytes()))
        )
            .prop_map(|(crypto_mode, kc)| {
                let (key_id, ciphertext) = match kc {
                    Some((k, c)) => (Some(k), Some(c)),
                    None => (None, None),
                };
                ClientFrame::KeyExchange {
                    crypto_mode,
                    key_id,
                    ciphertext,
                }
            }),
        (
            any_mode(),
            prop::option::of(any_bytes()),
            prop::collection::vec(any_bytes(), 0..=25),
            any::<bool>()
        )
            .prop_filter("an upload carries or replaces something", |(_, s, o, r)| s
                .is_some()
                || !o.is_empty()
                || *r)
            .prop_map(
                |(crypto_mode, signed_prekeys, one_time_prekeys, replace_one_time)| {
                    ClientFrame::UploadPrekeys {
                        crypto_mode,
                        signed_prekeys,
                        one_time_prekeys,
                        replace_one_time,
                    }
                }
            ),
        (any_user(), any_mode()).prop_map(|(username, crypto_mode)| ClientFrame::GetContact {
            username,
            crypto_mode
        }),
        (any_user(), any_mode()).prop_map(|(username, crypto_mode)| ClientFrame::GetPrekeys {
            username,
            crypto_mode
        }),
        any_user().prop_map(|username| ClientFrame::GetIdentity { username }),
    ]
}

fn any_relay() -> impl Strategy<Value = RelayFrame> {
    prop_oneof![
        (
            any::<[u8; 32]>().prop_map(|n| Bytes(n.to_vec())),
            "[0-9a-f]{64}",
            any_mode(),
            prop_oneof![Just(BindingKind::None), Just(BindingKind::TlsExporter)],
            any_bytes()
        )
            .prop_map(
                |(nonce, relay_id, crypto_mode, channel_binding, signature)| {
                    RelayFrame::Challenge {
                        nonce,
                        relay_id,
                        crypto_mode,
                        channel_binding,
                        signature,
                    }
                }
            ),
        (
            any_user(),
            any::<u64>(),
            prop::option::of(any::<[u64; 3]>())
        )
            .prop_map(|(username, pending, c)| RelayFrame::AuthOk {
                username,
                pending,
                one_time_prekeys: c.map(|[classical, hybrid, quantum]| PrekeyCounts {
                    classical,
                    hybrid,
                    quantum
                }),
            }),
        (any_mode(), any::<u64>()).prop_map(|(crypto_mode, one_time_prekeys)| {
            RelayFrame::PrekeysUploaded {
                crypto_mode,
                one_time_prekeys,
            }
        }),
        (
            any_user(),
            any_mode(),
            any_bytes(),
            prop::option::of(any_bytes())
        )
            .prop_map(|(username, crypto_mode, identity, bundle)| {
                RelayFrame::Contact {
                    username,
                    crypto_mode,
                    identity,
                    bundle,
                }
            }),
        (any_user(), any_bytes())
            .prop_map(|(username, bundle)| RelayFrame::IdentityBundle { username, bundle }),
        (any_user(), any_mode(), any_bytes()).prop_map(|(username, crypto_mode, bundle)| {
            RelayFrame::PrekeyBundle {
                username,
                crypto_mode,
                bundle,
            }
        }),
        (
            any_id(),
            any::<u64>(),
            prop::option::of(any_user()),
            any_mode(),
            any::<u64>(),
            any_payload()
        )
            .prop_map(|(id, seq, sender, crypto_mode, timestamp_ms, message)| {
                RelayFrame::Message {
                    id,
                    seq,
                    sender,
                    crypto_mode,
                    timestamp_ms,
                    message,
                }
            }),
        (any_id(), any::<bool>()).prop_map(|(id, duplicate)| RelayFrame::Sent { id, duplicate }),
        (
            any_mode(),
            0..=nano_proto::frames::MAX_SAFE_INTEGER,
            any_bytes(),
            any_bytes(),
            any::<u64>()
        )
            .prop_map(
                |(crypto_mode, key_id, public_key, signature, expires_at_ms)| {
                    RelayFrame::KeyExchange {
                        crypto_mode,
                        key_id,
                        public_key,
                        signature,
                        expires_at_ms,
                    }
                }
            ),
        (prop::option::of(any::<u64>()), any::<u32>(), any::<bool>()).prop_map(
            |(last_seq, count, more)| {
                RelayFrame::Fetched {
                    count,
                    last_seq,
                    more,
                }
            }
        ),
        (0..=nano_proto::frames::MAX_SAFE_INTEGER, any_bytes()).prop_map(
            |(key_id, confirmation)| RelayFrame::KeyExchangeOk {
                key_id,
                confirmation
            }
        ),
        (
            prop::sample::select(vec![
                ErrorCode::InvalidField,
                ErrorCode::RateLimited,
                ErrorCode::Internal
            ]),
            ".{0,80}",
            prop::option::of(any_id())
        )
            .prop_map(|(code, message, id)| RelayFrame::Error { code, message, id }),
    ]
}

proptest! {
    #[test]
    fn client_frames_round_trip_in_both_forms(f in any_client()) {
        prop_assert_eq!(ClientFrame::from_json(&f.to_json().unwrap()).unwrap(), f.clone());
        prop_assert_eq!(ClientFrame::from_binary(&f.to_binary().unwrap()).unwrap(), f);
    }

    #[test]
    fn relay_frames_round_trip_in_both_forms(f in any_relay()) {
        prop_assert_eq!(RelayFrame::from_json(&f.to_json().unwrap()).unwrap(), f.clone());
        prop_assert_eq!(RelayFrame::from_binary(&f.to_binary().unwrap()).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ClientFrame::from_binary(&b);
        let _ = RelayFrame::from_binary(&b);
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = ClientFrame::from_json(s);
            let _ = RelayFrame::from_json(s);
        }
    }
}

/// Payloads are bytes: NUL and non-UTF-8 included, raw in binary frames (PROTOCOL.md §11), where
/// a `send_message` without `id` adds 8 bytes beyond the recipient's name.
#[test]
fn payloads_are_raw_bytes_in_binary_frames() {
    let json =
        r#"{"type":"send_message","recipient":"u","message":"a\u0000b","crypto_mode":"hybrid"}"#;
    match ClientFrame::from_json(json).unwrap() {
        ClientFrame::SendMessage { message, .. } => assert_eq!(message, Payload(b"a\0b".to_vec())),
        f => panic!("{f:?}"),
    }
    let raw: Vec<u8> = (0..=255u8).chain([0xff, 0, 0xc3]).collect();
    let f = ClientFrame::SendMessage {
        recipient: user("bob"),
        message: Payload(raw.clone()),
        crypto_mode: CryptoMode::Hybrid,
        id: None,
    };
    let bin = f.to_binary().unwrap();
    assert_eq!(bin.len(), raw.len() + "bob".len() + 8);
    assert!(bin.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert_eq!(ClientFrame::from_binary(&bin).unwrap(), f);
    // JSON carries the same bytes as base64.
    let text = f.to_json().unwrap();
    assert!(text.contains(&Payload(raw).to_base64()));
    assert_eq!(ClientFrame::from_json(&text).unwrap(), f);
    // A length past the limit is refused before the bytes are read.
    let mut big = vec![0x02, 3];
    big.extend_from_slice(b"bob");
    big.extend_from_slice(
        &u32::try_from(nano_proto::MAX_MESSAGE_BYTES + 1)
            .unwrap()
            .to_be_bytes(),
    );
    assert_eq!(
        ClientFrame::from_binary(&big).unwrap_err().code(),
        ErrorCode::MessageTooLarge
    );
}

/// A frame wrapped as a string in another object (what Artillery's `send: {payload: …}` does)
/// is refused with a message that says what was expected instead; a plain object without
/// `type` is told only that `type` is missing.
#[test]
fn a_wrapped_frame_is_told_to_send_the_frame_itself() {
    let wrapped = r#"{"payload":"{\"type\":\"send_message\",\"recipient\":\"user_1\",\"message\":\"x\",\"crypto_mode\":\"hybrid\"}"}"#;
    let e = ClientFrame::from_json(wrapped).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidField);
    let m = e.to_string();
    assert!(m.contains("wrapped") && m.contains("\"payload\""), "{m}");
    assert!(m.contains(r#"{"type":"send_message",...}"#), "{m}");
    let plain = ClientFrame::from_json(r#"{"recipient":"x"}"#).unwrap_err();
    assert_eq!(plain.to_string(), "invalid field type: missing");
}

#[test]
fn a_binary_upload_of_too_many_prekeys_is_refused_before_it_is_read() {
    let mut b = vec![0x08, CryptoMode::Hybrid.to_byte(), 0x00];
    b.extend_from_slice(&26u16.to_be_bytes());
    for _ in 0..26 {
        b.extend_from_slice(&[0, 1, 0xAA]);
    }
    assert_eq!(
        ClientFrame::from_binary(&b).unwrap_err().code(),
        ErrorCode::InvalidField
    );
    // 25 are accepted.
    let mut ok = vec![0x08, CryptoMode::Hybrid.to_byte(), 0x00];
    ok.extend_from_slice(&25u16.to_be_bytes());
    for _ in 0..25 {
        ok.extend_from_slice(&[0, 1, 0xAA]);
    }
    // replace_one_time: false.
    ok.push(0x00);
    let f = ClientFrame::from_binary(&ok).unwrap();
    assert!(
        matches!(f, ClientFrame::UploadPrekeys { ref one_time_prekeys, replace_one_time: false, .. } if one_time_prekeys.len() == 25)
    );
    // The flag is a bool: 0x00 or 0x01, nothing else, and not missing.
    *ok.last_mut().unwrap() = 0x02;
    assert!(ClientFrame::from_binary(&ok).is_err());
    ok.pop();
    assert!(ClientFrame::from_binary(&ok).is_err());
}
