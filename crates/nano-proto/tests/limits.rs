//! The size limits derive from one another (PROTOCOL.md §6, "Size limits"): the largest
//! payload is the largest quantum session payload, a few bytes above the largest sealed
//! envelope; its base64 is the longest JSON `message`; and `max_plaintext_len` is the largest
//! plaintext that fits a limit both sealed and in any session payload.
#![allow(clippy::unwrap_used)]

use nano_crypto::envelope::{MAX_ENVELOPE_LEN, MAX_PLAINTEXT_LEN};
use nano_crypto::session::{MAX_PAYLOAD_LEN, max_overhead};
use nano_crypto::{AeadId, CryptoMode, Identity, OsRng};
use nano_proto::{MAX_MESSAGE_BYTES, MAX_MESSAGE_JSON_LEN, base64_len, max_plaintext_len};

fn sealed_len(mode: CryptoMode, plaintext: usize) -> usize {
    let a = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
    let b = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
    let env = nano_crypto::seal(
        &a,
        b.public_bundle(),
        &vec![7u8; plaintext],
        mode,
        AeadId::ChaCha20Poly1305,
    )
    .unwrap();
    env.len()
}

#[test]
fn the_numbers_in_the_protocol_document() {
    assert_eq!(MAX_PLAINTEXT_LEN, 65_536);
    assert_eq!(MAX_ENVELOPE_LEN, 71_842);
    assert_eq!(MAX_MESSAGE_BYTES, 71_882);
    assert_eq!(MAX_MESSAGE_BYTES, MAX_PAYLOAD_LEN);
    assert_eq!(MAX_MESSAGE_JSON_LEN, 95_844);
    assert_eq!(base64_len(0), 0);
    assert_eq!(base64_len(1), 4);
    assert_eq!(base64_len(3), 4);
    assert_eq!(base64_len(4), 8);
}

#[test]
fn the_largest_message_is_the_largest_session_payload() {
    assert_eq!(
        sealed_len(CryptoMode::Quantum, MAX_PLAINTEXT_LEN),
        MAX_ENVELOPE_LEN
    );
    const { assert!(MAX_ENVELOPE_LEN <= MAX_MESSAGE_BYTES) };
    for mode in CryptoMode::ALL {
        assert_eq!(
            max_plaintext_len(mode, MAX_MESSAGE_BYTES),
            MAX_PLAINTEXT_LEN
        );
    }
}

#[test]
fn max_plaintext_len_is_the_largest_that_fits_a_limit() {
    for mode in CryptoMode::ALL {
        let fits = |n: usize, limit: usize| {
            sealed_len(mode, n) <= limit && n + max_overhead(mode) <= limit
        };
        for limit in [20_000, 50_001, 70_002, 71_000] {
            let n = max_plaintext_len(mode, limit);
            assert!(fits(n, limit), "{mode} {limit}");
            if n < MAX_PLAINTEXT_LEN {
                assert!(!fits(n + 1, limit), "{mode} {limit}");
            }
        }
        assert_eq!(max_plaintext_len(mode, 10), 0);
    }
}
