//! What exactly is signed in the relay protocol, byte for byte (`docs/PROTOCOL.md` §11).
//!
//! One function per signed statement, so the relay and every client build identical bytes.
//! Each is signed with the [`nano_crypto::SigContext`] named in its doc; the context and the
//! label prefix keep a signature for one statement useless for any other.

use nano_crypto::{CryptoMode, Fingerprint, PublicBundle};

use crate::types::Username;

fn push_name(out: &mut Vec<u8>, name: &Username) {
    let b = name.as_str().as_bytes();
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// Username claim (`POST /v1/users`), context `proof-of-possession`:
/// `"nano-messenger/v1 claim" ‖ len (1) ‖ username ‖ bundle fingerprint (32)`.
pub fn claim_content(username: &Username, bundle: &PublicBundle) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 claim".to_vec();
    push_name(&mut out, username);
    out.extend_from_slice(&bundle.fingerprint().0);
    out
}

/// Key rotation (`PUT /v1/users/{name}/keys`), context `key-rotation`, signed by the *current*
/// key and by the *new* key of the same mode: `"nano-messenger/v1 rotate" ‖ len (1) ‖ username
/// ‖ key_version (8, big-endian) ‖ current fingerprint (32) ‖ new fingerprint (32)`.
/// `key_version` counts the user's rotations so far (0 after registration, from `GET
/// /v1/users/{name}`), so a statement is valid once: after A→B→A the old A→B statement names a
/// spent version. The new key's signature is its consent to the name (no rotating a name onto
/// someone else's keys).
pub fn rotation_content(
    username: &Username,
    key_version: u64,
    current: &Fingerprint,
    new: &Fingerprint,
) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 rotate".to_vec();
    push_name(&mut out, username);
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(&current.0);
    out.extend_from_slice(&new.0);
    out
}

/// Authentication (`auth` answering `challenge`), context `relay-auth`:
/// `"nano-messenger/v1 auth" ‖ nonce (32) ‖ relay fingerprint (32) ‖ len (1) ‖ username`.
pub fn auth_content(nonce: &[u8; 32], relay: &Fingerprint, username: &Username) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 auth".to_vec();
    out.extend_from_slice(nonce);
    out.extend_from_slice(&relay.0);
    push_name(&mut out, username);
    out
}

/// The relay's ephemeral key (`key_exchange`), context `relay-key-exchange`, signed by the relay:
/// `"nano-messenger/v1 kex" ‖ mode (1) ‖ key_id (8) ‖ expires_at_ms (8) ‖ public key`.
pub fn key_exchange_content(
    mode: CryptoMode,
    key_id: u64,
    expires_at_ms: u64,
    public_key: &[u8],
) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 kex".to_vec();
    out.push(mode.to_byte());
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(public_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let u = Username::new("bob").unwrap_or_else(|_| unreachable!());
        let a = auth_content(&[1; 32], &Fingerprint([2; 32]), &u);
        assert_eq!(&a[..22], b"nano-messenger/v1 auth");
        assert_eq!(&a[22..54], &[1; 32]);
        assert_eq!(&a[54..86], &[2; 32]);
        assert_eq!(&a[86..], b"\x03bob");
        let k = key_exchange_content(CryptoMode::Quantum, 7, 9, b"pk");
        assert_eq!(&k[..21], b"nano-messenger/v1 kex");
        assert_eq!(k[21], 3);
        assert_eq!(&k[22..30], &7u64.to_be_bytes());
        assert_eq!(&k[30..38], &9u64.to_be_bytes());
        assert_eq!(&k[38..], b"pk");
        let r = rotation_content(&u, 6, &Fingerprint([4; 32]), &Fingerprint([5; 32]));
        assert_eq!(&r[..24], b"nano-messenger/v1 rotate");
        assert_eq!(&r[24..28], b"\x03bob");
        assert_eq!(&r[28..36], &6u64.to_be_bytes());
        assert_eq!(&r[36..68], &[4; 32]);
        assert_eq!(&r[68..], &[5; 32]);
        assert_ne!(
            rotation_content(&u, 6, &Fingerprint([4; 32]), &Fingerprint([5; 32])),
            rotation_content(&u, 8, &Fingerprint([4; 32]), &Fingerprint([5; 32]))
        );
    }
}
