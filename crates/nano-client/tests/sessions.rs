#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The session core and its stores, without a relay: sessions start from a prekey bundle,
//! carry messages both ways, consume one-time prekeys, survive a restart (a fresh store over
//! the same files), and report what they cannot open.

use std::sync::Arc;

use nano_client::ClientError;
use nano_client::sessions::Sessions;
use nano_client::store::{FileStore, MemoryStore, PrekeyStore, ReceivedStore, Store};
use nano_crypto::session::{OneTimePrekeys, PrekeySecrets, SignedPrekeySecrets};
use nano_crypto::{AeadId, CryptoMode, Identity, OsRng};

/// `who`'s prekeys of `mode` saved in `store`; the bundle a relay would hand out (with the
/// first one-time prekey).
fn publish(who: &Identity, store: &dyn Store, mode: CryptoMode) -> Vec<u8> {
    let signed = SignedPrekeySecrets::generate(mode, 1, &mut OsRng).unwrap();
    let one_time = OneTimePrekeys::generate(mode, 10, 3, &mut OsRng).unwrap();
    let secrets = PrekeySecrets::new(signed, one_time).unwrap();
    let bundle = secrets.bundle(who, true, &mut OsRng).unwrap();
    store.store_prekeys(&secrets).unwrap();
    bundle.to_bytes()
}

/// `a` (alice's) starts a session with bob from `bundle`; the handshake carrying `first`.
fn start(
    a: &Sessions,
    alice: &Identity,
    bob: &Identity,
    bundle: &[u8],
    aead: AeadId,
    first: &[u8],
) -> Vec<u8> {
    a.initiate(alice, "bob", bob.public_bundle(), bundle, aead, first)
        .unwrap()
}

fn ids(mode: CryptoMode) -> (Identity, Identity) {
    (
        Identity::generate(mode, &mut OsRng).unwrap(),
        Identity::generate(mode, &mut OsRng).unwrap(),
    )
}

#[test]
fn a_session_carries_messages_both_ways_in_every_mode() {
    for mode in CryptoMode::ALL {
        let (alice, bob) = ids(mode);
        let (a_store, b_store) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
        let (a, b) = (Sessions::new(a_store), Sessions::new(b_store.clone()));
        let bundle = publish(&bob, b_store.as_ref(), mode);
        assert_eq!(
            a.encrypt("bob", mode, b"x").unwrap(),
            None,
            "no session yet"
        );
        let hs = start(
            &a,
            &alice,
            &bob,
            &bundle,
            AeadId::ChaCha20Poly1305,
            b"hello",
        );
        let opened = b.open(&bob, "alice", alice.public_bundle(), &hs).unwrap();
        assert_eq!(
            (opened.plaintext.as_slice(), opened.mode, opened.handshake),
            (&b"hello"[..], mode, true)
        );
        // The one-time prekey's secret is gone once its handshake is processed.
        assert_eq!(
            b_store
                .load_prekeys(mode)
                .unwrap()
                .unwrap()
                .one_time()
                .len(),
            2
        );
        for i in 0..30u32 {
            let m = a.encrypt("bob", mode, &i.to_be_bytes()).unwrap().unwrap();
            assert_eq!(
                b.open(&bob, "alice", alice.public_bundle(), &m)
                    .unwrap()
                    .plaintext,
                i.to_be_bytes()
            );
            let r = b.encrypt("alice", mode, &i.to_le_bytes()).unwrap().unwrap();
            let o = a.open(&alice, "bob", bob.public_bundle(), &r).unwrap();
            assert_eq!(
                (o.plaintext, o.handshake),
                (i.to_le_bytes().to_vec(), false)
            );
        }
        let info = a.info("bob").unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].mode, mode);
        // A replayed message does not open twice.
        let m = a.encrypt("bob", mode, b"once").unwrap().unwrap();
        b.open(&bob, "alice", alice.public_bundle(), &m).unwrap();
        assert!(matches!(
            b.open(&bob, "alice", alice.public_bundle(), &m),
            Err(ClientError::Rejected { .. })
        ));
    }
}

#[test]
fn a_message_on_a_session_this_side_lost_is_session_unknown() {
    let mode = CryptoMode::Hybrid;
    let (alice, bob) = ids(mode);
    let b_store = Arc::new(MemoryStore::new());
    let a = Sessions::new(Arc::new(MemoryStore::new()));
    let b = Sessions::new(b_store.clone());
    let bundle = publish(&bob, b_store.as_ref(), mode);
    let hs = start(&a, &alice, &bob, &bundle, AeadId::Aes256Gcm, b"hi");
    b.open(&bob, "alice", alice.public_bundle(), &hs).unwrap();
    let m = a.encrypt("bob", mode, b"after").unwrap().unwrap();
    // Bob on a fresh device: no session with alice.
    let fresh = Sessions::new(Arc::new(MemoryStore::new()));
    match fresh.open(&bob, "alice", alice.public_bundle(), &m) {
        Err(ClientError::SessionUnknown { sender, mode: got }) => {
            assert_eq!((sender.as_str(), got), ("alice", mode));
        }
        other => panic!("expected session_unknown, got {other:?}"),
    }
    // So is a handshake for prekeys this side no longer holds.
    assert!(matches!(
        fresh.open(&bob, "alice", alice.public_bundle(), &hs),
        Err(ClientError::SessionUnknown { .. })
    ));
    // Garbage is refused too.
    for junk in [&[][..], &[3, 2, 0], &[2; 40]] {
        assert!(
            fresh
                .open(&bob, "alice", alice.public_bundle(), junk)
                .is_err()
        );
    }
}

/// A handshake that does not open (a flipped bit, a stranger's signature) changes nothing: the
/// one-time prekey it named is still there for the real one, in memory and on disk.
#[test]
fn a_handshake_that_fails_leaves_the_prekey_secrets_as_they_were() {
    let mode = CryptoMode::Hybrid;
    let (alice, bob) = ids(mode);
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(MemoryStore::new()),
        Arc::new(FileStore::new(dir.path(), &bob).unwrap()),
    ];
    for b_store in stores {
        let a = Sessions::new(Arc::new(MemoryStore::new()));
        let b = Sessions::new(b_store.clone());
        let bundle = publish(&bob, b_store.as_ref(), mode);
        let hs = start(&a, &alice, &bob, &bundle, AeadId::Aes256Gcm, b"hi");
        let held = || {
            b_store
                .load_prekeys(mode)
                .unwrap()
                .unwrap()
                .one_time()
                .len()
        };
        assert_eq!(held(), 3);
        let mut flipped = hs.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(
            b.open(&bob, "alice", alice.public_bundle(), &flipped)
                .is_err()
        );
        let mallory = Identity::generate(mode, &mut OsRng).unwrap();
        assert!(b.open(&bob, "alice", mallory.public_bundle(), &hs).is_err());
        assert_eq!(held(), 3);
        let opened = b.open(&bob, "alice", alice.public_bundle(), &hs).unwrap();
        assert_eq!(
            (opened.plaintext.as_slice(), opened.handshake),
            (&b"hi"[..], true)
        );
        assert_eq!(held(), 2);
    }
}

/// Every returned payload was saved first: a restart (a new store over the same files) after
/// any message continues the chain without reusing a key, and the peer opens everything.
#[test]
fn file_state_survives_restarts_and_never_reuses_a_key() {
    let mode = CryptoMode::Hybrid;
    let (alice, bob) = ids(mode);
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("alice");
    let b_store = Arc::new(MemoryStore::new());
    let b = Sessions::new(b_store.clone());
    let bundle = publish(&bob, b_store.as_ref(), mode);
    let restart = || Sessions::new(Arc::new(FileStore::new(&a_dir, &alice).unwrap()));
    let hs = restart()
        .initiate(
            &alice,
            "bob",
            bob.public_bundle(),
            &bundle,
            AeadId::Aes256Gcm,
            &[0],
        )
        .unwrap();
    let mut sent = vec![hs];
    for i in 1..20u8 {
        sent.push(restart().encrypt("bob", mode, &[i]).unwrap().unwrap());
    }
    let distinct: std::collections::HashSet<_> = sent.iter().collect();
    assert_eq!(distinct.len(), sent.len());
    for (i, m) in sent.iter().enumerate() {
        let o = b.open(&bob, "alice", alice.public_bundle(), m).unwrap();
        assert_eq!(o.plaintext, [u8::try_from(i).unwrap()]);
    }
    // The files are the owner's only, and bound to their place and to the identity.
    use std::os::unix::fs::PermissionsExt;
    let file = a_dir.join("sessions/hybrid/bob");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::create_dir_all(a_dir.join("sessions/hybrid")).unwrap();
    std::fs::copy(&file, a_dir.join("sessions/hybrid/carol")).unwrap();
    let store = FileStore::new(&a_dir, &alice).unwrap();
    assert!(matches!(
        nano_client::store::SessionStore::load_sessions(&store, "carol", mode),
        Err(ClientError::Invalid(_))
    ));
    let other = FileStore::new(&a_dir, &bob).unwrap();
    assert!(nano_client::store::SessionStore::load_sessions(&other, "bob", mode).is_err());
    // A damaged file is an error, never a panic or an empty state.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    assert!(nano_client::store::SessionStore::load_sessions(&store, "bob", mode).is_err());
}

/// A crash after a received payload's state was saved and before it was shown or acknowledged
/// loses nothing: the restarted client opens the redelivery from the kept plaintext (its key
/// is spent). Once acknowledged, a redelivery is a replay.
#[test]
fn a_message_opened_before_a_crash_is_handed_out_again_until_acknowledged() {
    let mode = CryptoMode::Hybrid;
    let (alice, bob) = ids(mode);
    let dir = tempfile::tempdir().unwrap();
    let b_dir = dir.path().join("bob");
    let bob_store = |dir: &std::path::Path| Arc::new(FileStore::new(dir, &bob).unwrap());
    let a = Sessions::new(Arc::new(MemoryStore::new()));
    let bundle = publish(&bob, bob_store(&b_dir).as_ref(), mode);
    let hs = start(&a, &alice, &bob, &bundle, AeadId::Aes256Gcm, b"first");
    let m = a.encrypt("bob", mode, b"second").unwrap().unwrap();
    for (payload, text) in [(&hs, &b"first"[..]), (&m, &b"second"[..])] {
        let before = Sessions::new(bob_store(&b_dir));
        let o = before
            .open(&bob, "alice", alice.public_bundle(), payload)
            .unwrap();
        assert_eq!(o.plaintext, text);
        // "Crash": a new process over the same files gets the same message again.
        let after = Sessions::new(bob_store(&b_dir));
        let again = after
            .open(&bob, "alice", alice.public_bundle(), payload)
            .unwrap();
        assert_eq!(again, o);
        // The same bytes said to come from someone else are refused.
        assert!(matches!(
            after.open(&bob, "mallory", alice.public_bundle(), payload),
            Err(ClientError::Rejected { .. })
        ));
    }
    // Acknowledged: forgotten, and a redelivery of the spent key is a replay.
    let store = bob_store(&b_dir);
    let id = nano_proto::Payload(m.clone()).session_message_id();
    store.remove_received(&[id]).unwrap();
    assert!(matches!(
        Sessions::new(store).open(&bob, "alice", alice.public_bundle(), &m),
        Err(ClientError::Rejected { .. })
    ));
}

/// Two stores over one directory (two processes on one home) take turns: while one holds the
/// lock, the other waits for it.
#[test]
fn two_file_stores_on_one_directory_take_turns() {
    let (alice, _) = ids(CryptoMode::Classical);
    let dir = tempfile::tempdir().unwrap();
    let one = FileStore::new(dir.path(), &alice).unwrap();
    let two = Arc::new(FileStore::new(dir.path(), &alice).unwrap());
    let held = one.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let two = Arc::clone(&two);
        std::thread::spawn(move || {
            let _turn = two.lock().unwrap();
            tx.send(()).unwrap();
        })
    };
    // The other store cannot take the lock while it is held…
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err()
    );
    drop(held);
    // …and takes it once it is released.
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    waiter.join().unwrap();
}
