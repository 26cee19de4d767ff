//! What exactly is signed in the relay protocol, byte for byte (`docs/PROTOCOL.md` §11).
//!
//! One function per signed statement, so the relay and every client build identical bytes.
//! Each is signed with the [`nano_crypto::SigContext`] named in its doc; the context and the
//! label prefix keep a signature for one statement useless for any other.

use nano_crypto::{CryptoMode, Fingerprint, PublicBundle};

use crate::binding::ChannelBinding;
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

/// The connection transcript both sides of a login sign: `relay fingerprint (32) ‖ relay
/// nonce (32) ‖ client nonce (32) ‖ channel binding (33, [`ChannelBinding::encode`])`.
fn push_transcript(out: &mut Vec<u8>, relay: &Fingerprint, login: &Login<'_>) {
    out.extend_from_slice(&relay.0);
    out.extend_from_slice(login.relay_nonce);
    out.extend_from_slice(login.client_nonce);
    out.extend_from_slice(&login.binding.encode());
}

/// What one login on one connection is made of: the nonces of `challenge` and `hello`, and the
/// connection's channel binding.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// `challenge.nonce`, chosen by the relay.
    pub relay_nonce: &'a [u8; 32],
    /// `hello.nonce`, chosen by the client.
    pub client_nonce: &'a [u8; 32],
    /// This connection's binding, as computed by the end that signs or verifies.
    pub binding: ChannelBinding,
}

/// The relay's proof of identity (`challenge` answering `hello`), context `relay-challenge`,
/// signed by the relay's key of `challenge.crypto_mode`:
/// `"nano-messenger/v1 challenge" ‖ relay fingerprint (32) ‖ relay nonce (32) ‖ client nonce
/// (32) ‖ binding kind (1) ‖ binding value (32)`, 156 bytes.
pub fn challenge_content(relay: &Fingerprint, login: &Login<'_>) -> Vec<u8> {
    let mut out = b"nano-messenger/v1 challenge".to_vec();
    push_transcript(&mut out, relay, login);
    out
}

/// Authentication (`auth` answering `challenge`), context `relay-auth`, signed by the user's
/// key of `auth.crypto_mode`: `"nano-messenger/v2 auth" ‖ relay fingerprint (32) ‖ relay nonce
/// (32) ‖ client nonce (32) ‖ binding kind (1) ‖ binding value (32) ‖ len (1) ‖ username`.
/// (`v2`: the v1 statement signed the relay nonce alone and could be relayed.)
pub fn auth_content(relay: &Fingerprint, login: &Login<'_>, username: &Username) -> Vec<u8> {
    let mut out = b"nano-messenger/v2 auth".to_vec();
    push_transcript(&mut out, relay, login);
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
        let login = Login {
            relay_nonce: &[1; 32],
            client_nonce: &[3; 32],
            binding: ChannelBinding::TlsExporter([6; 32]),
        };
        let a = auth_content(&Fingerprint([2; 32]), &login, &u);
        assert_eq!(&a[..22], b"nano-messenger/v2 auth");
        assert_eq!(&a[22..54], &[2; 32]);
        assert_eq!(&a[54..86], &[1; 32]);
        assert_eq!(&a[86..118], &[3; 32]);
        assert_eq!(a[118], 1);
        assert_eq!(&a[119..151], &[6; 32]);
        assert_eq!(&a[151..], b"\x03bob");
        let c = challenge_content(&Fingerprint([2; 32]), &login);
        assert_eq!(c.len(), 156);
        assert_eq!(&c[..27], b"nano-messenger/v1 challenge");
        assert_eq!(&c[27..], &a[22..151]);
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
