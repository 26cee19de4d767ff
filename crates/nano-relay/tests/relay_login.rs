//! Logging in, end to end against the real binary (PROTOCOL.md §12): the relay proves its
//! identity on every connection with a signature over both nonces and the channel binding; an
//! `auth` is spent once and bound to the connection it was made for; each refusal has its code.
//! (Over TLS, the same with the RFC 9266 binding is tested through the client in
//! `nano-client/tests/login.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::collections::HashSet;

use nano_crypto::{CryptoMode, PublicBundle, SigContext, Signature};
use nano_proto::signed::challenge_content;
use nano_proto::{BindingKind, Bytes, ChannelBinding, ClientFrame, RelayFrame};
use relay_common::{Config, Relay, User, start_with_alice_and_bob};

#[tokio::test]
async fn every_challenge_is_signed_by_the_relay_identity_over_both_nonces_and_the_binding() {
    let (relay, alice, _) = start_with_alice_and_bob(&Config::new()).await;
    let info = relay.info().await;
    let bundle = PublicBundle::from_bytes(info.identity.as_slice()).unwrap();
    let fp = bundle.fingerprint();
    let mut nonces = HashSet::new();
    for mode in CryptoMode::ALL {
        let mut ws = relay.connect().await;
        let ch = ws.challenge_in(mode).await;
        assert_eq!(ch.mode, mode);
        assert_eq!(ch.relay_id, info.relay_id);
        assert_eq!(ch.channel_binding, BindingKind::None, "plain loopback");
        assert!(nonces.insert(ch.nonce), "{mode}: a relay nonce came twice");
        let vk = bundle.verifying_key(mode).unwrap();
        let sig = Signature::from_bytes(mode, &ch.signature).unwrap();
        vk.verify(
            SigContext::RelayChallenge,
            &challenge_content(&fp, &ch.login()),
            &sig,
        )
        .unwrap_or_else(|e| panic!("{mode}: the challenge does not verify: {e}"));
        // Bound to the client's nonce, the binding and the context.
        let mut other_nonce = ch.clone();
        other_nonce.client_nonce[0] ^= 1;
        let mut other_binding = ch.clone();
        other_binding.binding = ChannelBinding::TlsExporter([0; 32]);
        for (what, c, ctx) in [
            (
                "another client nonce",
                &other_nonce,
                SigContext::RelayChallenge,
            ),
            ("a TLS binding", &other_binding, SigContext::RelayChallenge),
            ("the auth context", &ch, SigContext::RelayAuth),
        ] {
            assert!(
                vk.verify(ctx, &challenge_content(&fp, &c.login()), &sig)
                    .is_err(),
                "{mode}: verifies with {what}"
            );
        }
        // A login answers a challenge in any mode the relay allows.
        alice.login_with(&mut ws, CryptoMode::Classical, &ch).await;
    }
}

#[tokio::test]
async fn an_auth_is_spent_once_and_bound_to_its_connection() {
    let (relay, alice, _) = start_with_alice_and_bob(&Config::new()).await;

    // No hello, no login.
    let mut ws = relay.connect().await;
    ws.send(&ClientFrame::Auth {
        username: alice.name.clone(),
        crypto_mode: CryptoMode::Classical,
        signature: Bytes(vec![0; 64]),
    })
    .await;
    ws.expect_error("auth_failed").await;

    // alice's answer to connection a's challenge, submitted on b (a relayed login): refused,
    // whatever b's own challenge.
    let mut a = relay.connect().await;
    let ch_a = a.challenge().await;
    let mut b = relay.connect().await;
    let ch_b = b.challenge().await;
    assert_ne!(ch_a.nonce, ch_b.nonce);
    let for_a = alice.auth(CryptoMode::Classical, &ch_a);
    b.send(&for_a).await;
    b.expect_error("auth_failed").await;
    // b's challenge was spent by that attempt: its right answer fails now too.
    b.send(&alice.auth(CryptoMode::Classical, &ch_b)).await;
    b.expect_error("auth_failed").await;
    // On a, the connection it was made for, the same answer logs in, once.
    a.send(&for_a).await;
    assert!(matches!(a.recv().await, RelayFrame::AuthOk { .. }));
    a.page().await;
    a.send(&for_a).await;
    a.expect_error("invalid_field").await;
    a.hello(CryptoMode::Hybrid).await;
    a.expect_error("invalid_field").await;
    // b starts over with a new hello and logs in.
    let ch = b.challenge().await;
    alice.login_with(&mut b, CryptoMode::Classical, &ch).await;
}

#[tokio::test]
async fn a_connection_gets_sixteen_logins() {
    let relay = Relay::start(&Config::new()).await;
    let alice = User::new("alice", CryptoMode::Classical);
    alice.register(&relay).await;
    let mut ws = relay.connect().await;
    for _ in 0..16 {
        let ch = ws.challenge().await;
        ws.send(&alice.auth(CryptoMode::Classical, &ch.clone_with_other_nonce()))
            .await;
        ws.expect_error("auth_failed").await;
    }
    ws.hello(CryptoMode::Hybrid).await;
    let (message, _) = ws.expect_error("rate_limited").await;
    assert!(message.contains("too many logins"), "{message}");
    // A new connection logs in.
    alice.connect(&relay).await;
}
