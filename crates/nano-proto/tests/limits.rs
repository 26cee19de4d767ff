//! The size limits derive from one another (PROTOCOL.md §6, "Size limits"): the largest
//! plaintext, sealed in the mode with the largest overhead and base64-encoded, is exactly the
//! largest `message` field, and `max_plaintext_len` is the largest plaintext that fits a limit.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use nano_crypto::envelope::{MAX_ENVELOPE_LEN, MAX_PLAINTEXT_LEN};
use nano_crypto::{AeadId, CryptoMode, Identity, OsRng};
use nano_proto::{MAX_MESSAGE_BYTES, base64_len, max_plaintext_len};

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
    base64::engine::general_purpose::STANDARD.encode(env).len()
}

#[test]
fn the_numbers_in_the_protocol_document() {
    assert_eq!(MAX_PLAINTEXT_LEN, 65_536);
    assert_eq!(MAX_ENVELOPE_LEN, 71_842);
    assert_eq!(MAX_MESSAGE_BYTES, 95_792);
    assert_eq!(base64_len(0), 0);
    assert_eq!(base64_len(1), 4);
    assert_eq!(base64_len(3), 4);
    assert_eq!(base64_len(4), 8);
}

#[test]
fn the_largest_message_is_the_largest_quantum_envelope() {
    assert_eq!(
        sealed_len(CryptoMode::Quantum, MAX_PLAINTEXT_LEN),
        MAX_MESSAGE_BYTES
    );
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
        for limit in [20_000, 50_001, 70_002, 90_003] {
            let n = max_plaintext_len(mode, limit);
            assert!(sealed_len(mode, n) <= limit, "{mode} {limit}");
            if n < MAX_PLAINTEXT_LEN {
                assert!(sealed_len(mode, n + 1) > limit, "{mode} {limit}");
            }
        }
        assert_eq!(max_plaintext_len(mode, 10), 0);
    }
}
