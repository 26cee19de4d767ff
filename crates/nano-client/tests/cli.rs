#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `nano-client` binary in temporary homes against the real relay binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use common::{Relay, WAIT, cli, closed_port, rotate_keys};
use nano_client::{Client, ClientConfig, Incoming, TrustAll};
use nano_crypto::{CryptoMode, Identity, OsRng};
use nano_proto::Username;
use tokio::time::timeout;

const PASS: &str = "correct horse battery staple";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(home: &Path, stdin: Option<&str>, args: &[&str]) -> String {
    let o = cli(home, Some(PASS), stdin, args);
    assert!(
        o.status.success(),
        "nano-client {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Checks a failed run: non-zero exit, one `nano-client: ` line on stderr, no panic; returns
/// that line.
fn failed(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: expected a failure\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(
        !err.contains("panicked") && !err.to_lowercase().contains("backtrace"),
        "{what}: panicked: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line on stderr: {err}");
    assert!(
        lines[0].starts_with("nano-client: "),
        "{what}: unexpected stderr: {err}"
    );
    lines[0].to_owned()
}

fn init(home: &Path, name: &str, mode: &str, relay: &str) -> String {
    ok(
        home,
        None,
        &[
            "init",
            "--username",
            name,
            "--crypto-mode",
            mode,
            "--relay",
            relay,
        ],
    )
}

fn mode_bits(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The value after `key: ` in `text`.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key:?} in {text}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn init_register_send_receive_whoami_contacts_and_errors() {
    let relay = Relay::start();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");

    // init: the files exist, the keystore is private.
    let out = init(&alice, "alice", "classical", &relay.api);
    assert!(out.contains("alice"), "{out}");
    init(&bob, "bob", "hybrid", &relay.api);
    for f in ["identity.nks", "profile.json"] {
        assert!(alice.join(f).is_file(), "{f} missing");
    }
    assert_eq!(mode_bits(&alice.join("identity.nks")), 0o600);
    assert_eq!(mode_bits(&alice.join("profile.json")), 0o600);
    assert_eq!(mode_bits(&alice), 0o700);
    let who = ok(&alice, None, &["whoami"]);
    assert!(who.contains("not pinned yet"), "{who}");

    // register pins the relay's identity.
    let info = nano_client::api::Api::new(&relay.api)
        .unwrap()
        .relay_info()
        .await
        .unwrap();
    let out = ok(&alice, None, &["register"]);
    assert!(out.contains(&info.relay_id), "{out}");
    ok(&bob, None, &["register"]);

    let who = ok(&alice, None, &["whoami"]);
    assert_eq!(field(&who, "username"), "alice");
    assert_eq!(field(&who, "minimum mode"), "classical");
    assert_eq!(field(&who, "relay"), relay.api);
    assert_eq!(field(&who, "relay identity"), info.relay_id);
    let alice_fp = field(&who, "fingerprint");
    assert_eq!(alice_fp.len(), 64, "{who}");
    let bob_fp = field(&ok(&bob, None, &["whoami"]), "fingerprint");

    // send with the text as argument; receive prints it with the sender.
    let sent = ok(&alice, None, &["send", "bob", "hello from the argument"]);
    assert!(
        sent.starts_with("sent ") && sent.contains("to bob"),
        "{sent}"
    );
    let got = ok(&bob, None, &["receive"]);
    assert!(got.contains("hello from the argument"), "{got}");
    assert!(got.contains("alice"), "{got}");
    assert_eq!(got.lines().count(), 1, "{got}");

    // send from standard input, explicit mode; receive --json.
    let sent = ok(
        &alice,
        Some("hello from stdin\n"),
        &["send", "bob", "--crypto-mode", "quantum"],
    );
    let id = sent
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {sent}"))
        .to_owned();
    let got = ok(&bob, None, &["receive", "--json"]);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 1, "{got}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(v["sender"], "alice", "{v}");
    assert_eq!(v["crypto_mode"], "quantum", "{v}");
    assert_eq!(v["text"], "hello from stdin", "{v}");
    assert_eq!(v["fingerprint"], alice_fp.as_str(), "{v}");
    assert!(v["timestamp"].as_u64().is_some_and(|t| t > 0), "{v}");
    assert!(v["sent_at"].as_u64().is_some_and(|t| t > 0), "{v}");

    // Nothing new.
    let again = ok(&bob, None, &["receive"]);
    assert_eq!(again, "", "a second receive printed something");

    // contacts: pinned on first use on both sides.
    let list = ok(&alice, None, &["contacts", "list"]);
    assert!(list.contains("bob") && list.contains(&bob_fp), "{list}");
    let show = ok(&alice, None, &["contacts", "show", "bob"]);
    assert_eq!(field(&show, "fingerprint"), bob_fp, "{show}");
    let list = ok(&bob, None, &["contacts", "list"]);
    assert!(list.contains("alice") && list.contains(&alice_fp), "{list}");
    let o = cli(&alice, Some(PASS), None, &["contacts", "show", "carol"]);
    failed(&o, "contacts show of a stranger");

    // Errors: unknown recipient, wrong passphrase.
    let o = cli(&alice, Some(PASS), None, &["send", "nobody", "hi"]);
    let line = failed(&o, "unknown recipient");
    assert!(line.contains("nobody"), "{line}");
    let o = cli(&bob, Some("not the passphrase"), None, &["receive"]);
    let line = failed(&o, "wrong passphrase");
    assert!(line.contains("wrong passphrase"), "{line}");
}

#[tokio::test]
async fn errors_without_a_home_or_a_relay() {
    let tmp = tempfile::tempdir().unwrap();

    // No home.
    let missing = tmp.path().join("missing");
    for args in [&["whoami"][..], &["send", "bob", "hi"], &["receive"]] {
        let o = cli(&missing, Some(PASS), None, args);
        let line = failed(&o, &format!("{args:?} without a home"));
        assert!(line.contains("nano-client init"), "{line}");
    }
    assert!(!missing.exists(), "a failed command created the home");

    // A relay that is not there.
    let home = tmp.path().join("alice");
    let url = format!("http://127.0.0.1:{}", closed_port());
    init(&home, "alice", "classical", &url);
    let o = cli(&home, Some(PASS), None, &["register"]);
    let line = failed(&o, "unreachable relay");
    assert!(line.contains("cannot reach the relay"), "{line}");

    let o = cli(&home, Some(PASS), None, &["send", "bob", "hi"]);
    let line = failed(&o, "send before register");
    assert!(line.contains("nano-client register"), "{line}");

    // A second init in the same home, a missing passphrase, a bad relay URL.
    let o = cli(
        &home,
        Some(PASS),
        None,
        &["init", "--username", "x", "--relay", &url],
    );
    failed(&o, "init over an existing home");
    let o = cli(&home, None, None, &["register"]);
    let line = failed(&o, "no passphrase");
    assert!(line.contains("NANO_PASSPHRASE"), "{line}");
    let o = cli(
        &tmp.path().join("other"),
        Some(PASS),
        None,
        &["init", "--username", "x", "--relay", "ftp://example"],
    );
    failed(&o, "a relay URL that is not http");
}

#[test]
fn every_subcommand_has_help() {
    let home = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &["init", "register", "send", "receive", "contacts", "whoami"],
        ),
        (
            &["init"],
            &["--username", "--crypto-mode", "--relay", "--home"],
        ),
        (&["register"], &["--home"]),
        (&["send"], &["RECIPIENT", "TEXT", "--crypto-mode"]),
        (&["receive"], &["--follow", "--json"]),
        (&["contacts"], &["list", "show", "trust"]),
        (&["contacts", "list"], &["--home"]),
        (&["contacts", "show"], &["NAME"]),
        (&["contacts", "trust"], &["NAME"]),
        (&["whoami"], &["--home"]),
    ];
    for (cmd, wanted) in cases {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = cli(home.path(), None, None, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = stdout(&o);
        for w in *wanted {
            assert!(text.contains(w), "{args:?} does not mention {w}:\n{text}");
        }
    }
}

#[tokio::test]
async fn contacts_trust_accepts_a_rotated_key() {
    let relay = Relay::start();
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    init(&alice, "alice", "classical", &relay.api);
    ok(&alice, None, &["register"]);
    let bob = Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap();
    timeout(
        WAIT,
        Client::register_only(&ClientConfig::new(&relay.api, "bob"), &bob),
    )
    .await
    .unwrap()
    .unwrap();
    ok(&alice, None, &["send", "bob", "first"]);

    // Bob rotates his keys.
    let bob2 = Arc::new(Identity::generate(CryptoMode::Classical, &mut OsRng).unwrap());
    rotate_keys(&relay.api, "bob", &bob, &bob2).await;

    let o = cli(&alice, Some(PASS), None, &["send", "bob", "refused"]);
    let line = failed(&o, "send after bob's key changed");
    assert!(
        line.contains("changed") && line.contains("contacts trust bob"),
        "{line}"
    );

    // Bob writes from his new key: Alice's receive refuses it and keeps it on the relay.
    let (bob_client, mut rx, _) = timeout(
        WAIT,
        Client::connect(
            ClientConfig::new(&relay.api, "bob"),
            Arc::clone(&bob2),
            Arc::new(TrustAll),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(
        WAIT,
        bob_client.send("alice", b"from the new key", nano_client::ModeChoice::Auto),
    )
    .await
    .unwrap()
    .unwrap();
    let o = cli(&alice, Some(PASS), None, &["receive"]);
    let line = failed(&o, "receive from bob's new key");
    assert!(line.contains("changed"), "{line}");
    assert_eq!(stdout(&o), "");

    // Trust needs the fingerprint checked with bob: without it the served key is shown and
    // nothing changes; with another one, nothing changes either.
    let bob2_fp = bob2.fingerprint().to_hex();
    let o = cli(&alice, Some(PASS), None, &["contacts", "trust", "bob"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("--fingerprint {bob2_fp}")),
        "{}",
        stderr(&o)
    );
    let wrong = "0".repeat(64);
    let o = cli(
        &alice,
        Some(PASS),
        None,
        &["contacts", "trust", "bob", "--fingerprint", &wrong],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nothing was trusted"), "{}", stderr(&o));
    let out = ok(
        &alice,
        None,
        &["contacts", "trust", "bob", "--fingerprint", &bob2_fp],
    );
    assert!(out.contains("trusted bob"), "{out}");
    let show = ok(&alice, None, &["contacts", "show", "bob"]);
    assert_eq!(field(&show, "fingerprint"), bob2.fingerprint().to_hex());
    let got = ok(&alice, None, &["receive"]);
    assert!(got.contains("from the new key"), "{got}");
    ok(&alice, None, &["send", "bob", "after trust"]);

    // Bob's new identity gets it (the first message was sealed for the old key).
    loop {
        match timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
            Incoming::Message(m) if m.plaintext == b"after trust" => break,
            Incoming::Message(m) => panic!("unexpected message {m:?}"),
            Incoming::Rejected { .. } | Incoming::UpToDate | Incoming::Redelivered { .. } => {}
            Incoming::Unverifiable { .. } | Incoming::SessionReset { .. } => {
                panic!("unexpected test traffic or session reset")
            }
        }
    }
}

/// Flips a body byte of (`truncate` false) or truncates (`truncate` true) the stored envelope
/// of the message with hex id `id`.
fn damage(relay: &Relay, id: &str, truncate: bool) {
    let db = rusqlite::Connection::open(relay.db_path()).expect("open relay.db");
    db.busy_timeout(WAIT).unwrap();
    let id = hex::decode(id).expect("hex id");
    let mut bytes: Vec<u8> = db
        .query_row(
            "SELECT payload FROM messages WHERE message_id = ?1",
            [id.clone()],
            |r| r.get(0),
        )
        .expect("the stored message");
    if truncate {
        bytes.truncate(bytes.len() / 2);
    } else {
        let i = bytes.len() - nano_crypto::sign::signature_len(CryptoMode::Hybrid) - 10;
        bytes[i] ^= 0x55;
    }
    let n = db
        .execute(
            "UPDATE messages SET payload = ?1 WHERE message_id = ?2",
            rusqlite::params![bytes, id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// An unauthenticated `send_message` (the relay accepts anonymous sends by default).
async fn send_anonymously(relay: &Relay, to: &str, message: &str, mode: CryptoMode) {
    use futures_util::{SinkExt, StreamExt};
    use nano_proto::{ClientFrame, RelayFrame};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(relay.ws.as_str()))
        .await
        .unwrap()
        .unwrap();
    let frame = ClientFrame::SendMessage {
        recipient: Username::new(to).unwrap(),
        message: nano_proto::Payload::from_json_text(message),
        crypto_mode: mode,
        id: None,
    };
    ws.send(Message::text(frame.to_json().unwrap()))
        .await
        .unwrap();
    loop {
        let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        let Message::Text(t) = m else { continue };
        match RelayFrame::from_json(&t).unwrap() {
            RelayFrame::Sent { .. } => break,
            RelayFrame::Error { code, message, .. } => panic!("refused: {code} {message}"),
            _ => {}
        }
    }
}

/// Homes for alice (classical) and bob (`bob_mode`) in a fresh temp dir (kept alive by the
/// first value), both initialised for `relay` and registered.
fn alice_and_bob_registered(
    relay: &Relay,
    bob_mode: &str,
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    init(&alice, "alice", "classical", &relay.api);
    init(&bob, "bob", bob_mode, &relay.api);
    ok(&alice, None, &["register"]);
    ok(&bob, None, &["register"]);
    (tmp, alice, bob)
}

/// `receive` removes what can never be opened (main.rs: "A message that can never be opened is
/// removed; one from a contact whose key changed stays until the key is trusted again"): a
/// message with a bad signature is rejected; on a development relay, which admits test
/// traffic, a damaged envelope and an anonymous plain-text payload are said to be not
/// envelopes, not shown, and removed too.
#[tokio::test]
async fn receive_removes_messages_that_can_never_be_opened() {
    let relay = Relay::start_development();
    let (_tmp, alice, bob) = alice_and_bob_registered(&relay, "hybrid");
    let id_of = |out: String| out.split_whitespace().nth(1).unwrap().to_owned();
    let hybrid = ["--crypto-mode", "hybrid"];
    // Sealed envelopes: what damage does to a session message is tested with sessions.
    ok(
        &alice,
        None,
        &["send", "bob", "intact", hybrid[0], hybrid[1], "--sealed"],
    );
    let bad_sig = id_of(ok(
        &alice,
        None,
        &[
            "send",
            "bob",
            "bad signature",
            hybrid[0],
            hybrid[1],
            "--sealed",
        ],
    ));
    let cut = id_of(ok(
        &alice,
        None,
        &[
            "send",
            "bob",
            "cut in half",
            hybrid[0],
            hybrid[1],
            "--sealed",
        ],
    ));
    damage(&relay, &bad_sig, false);
    damage(&relay, &cut, true);
    send_anonymously(&relay, "bob", "not an envelope", CryptoMode::Hybrid).await;

    let o = cli(&bob, Some(PASS), None, &["receive"]);
    assert!(!o.status.success(), "rejected messages make receive fail");
    let out = stdout(&o);
    assert!(out.contains("intact") && out.lines().count() == 1, "{out}");
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    // One line per rejected message (besides the note that alice's key was pinned).
    let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("pinned ")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    assert!(
        errors.iter().all(|l| l.starts_with("nano-client: ")),
        "{err}"
    );
    assert_eq!(
        errors
            .iter()
            .filter(|l| l.contains("rejected a message from alice"))
            .count(),
        1,
        "{err}"
    );
    assert!(
        errors.iter().any(|l| l.contains("from alice")
            && l.contains(&cut)
            && l.contains("is not a sealed envelope; not shown")),
        "{err}"
    );
    assert!(
        errors.iter().any(|l| l.contains("from an anonymous sender")
            && l.contains("is not a sealed envelope; not shown")),
        "{err}"
    );

    // They were removed: the next receive has nothing to say.
    let o = cli(&bob, Some(PASS), None, &["receive"]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "messages that can never be opened are still in the inbox ({}):\n{}",
        o.status,
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
}

/// `receive --follow --json` prints the backlog, then messages as they arrive, until stopped.
#[tokio::test]
async fn receive_follow_prints_messages_as_they_arrive() {
    use std::io::BufRead;
    let relay = Relay::start();
    let (_tmp, alice, bob) = alice_and_bob_registered(&relay, "classical");
    ok(&alice, None, &["send", "bob", "waiting already"]);

    let mut child = spawn(&bob, &["receive", "--follow", "--json"]);
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_text = || -> String {
        let line = rx
            .recv_timeout(WAIT)
            .expect("no line from receive --follow")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(v["sender"], "alice", "{v}");
        v["text"].as_str().unwrap().to_owned()
    };
    assert_eq!(next_text(), "waiting already");
    // The first line proves it is connected; this one arrives while it runs.
    ok(&alice, None, &["send", "bob", "live"]);
    assert_eq!(next_text(), "live");
}

/// The development configuration end to end over `https://localhost` and `wss://localhost`:
/// the relay's self-signed certificate is trusted with `--relay-ca`; without it, registration
/// fails on the certificate and says so.
#[tokio::test]
async fn init_register_send_receive_over_https_with_the_relay_ca() {
    let relay = Relay::start_tls();
    assert!(relay.api.starts_with("https://"), "{}", relay.api);
    // The certificate names localhost.
    let url = relay.api.replace("127.0.0.1", "localhost");
    let ca = relay.dir().join("data").join("tls-self-signed.crt");
    assert!(ca.is_file(), "{} missing", ca.display());
    let ca = ca.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob, eve) = (
        tmp.path().join("alice"),
        tmp.path().join("bob"),
        tmp.path().join("eve"),
    );
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(
            home,
            None,
            &[
                "init",
                "--username",
                name,
                "--relay",
                &url,
                "--relay-ca",
                ca,
            ],
        );
        ok(home, None, &["register"]);
    }
    ok(&alice, None, &["send", "bob", "over TLS"]);
    let out = ok(&bob, None, &["receive"]);
    assert!(out.contains("over TLS"), "{out}");

    init(&eve, "eve", "hybrid", &url);
    let o = cli(&eve, Some(PASS), None, &["register"]);
    let line = failed(&o, "register without the relay CA");
    assert!(line.contains("certificate"), "{line}");
}

/// `NANO_PASSPHRASE_FILE`: the first line of an owner-only file unlocks the keystore (and takes
/// precedence over `NANO_PASSPHRASE`); a file others may read, a missing file, or a wrong
/// passphrase in it are refused with one clear line.
#[test]
fn the_passphrase_can_come_from_an_owner_only_file() {
    let relay = Relay::start();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("alice");
    init(&home, "alice", "classical", &relay.api);
    let file = tmp.path().join("passphrase");
    std::fs::write(&file, format!("{PASS}\nignored second line\n")).unwrap();
    let with_file = |mode: Option<u32>, env: Option<&str>| {
        if let Some(mode) = mode {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut cmd = std::process::Command::new(common::client_bin());
        cmd.arg("--home").arg(&home).arg("register");
        cmd.env_remove("NANO_HOME")
            .env("NANO_PASSPHRASE_FILE", &file);
        match env {
            Some(p) => cmd.env("NANO_PASSPHRASE", p),
            None => cmd.env_remove("NANO_PASSPHRASE"),
        };
        common::run(&mut cmd, None)
    };
    let line = failed(
        &with_file(Some(0o644), None),
        "a world-readable passphrase file",
    );
    assert!(line.contains("owner only"), "{line}");
    let o = with_file(Some(0o600), Some("not the passphrase"));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&file, "wrong\n").unwrap();
    let line = failed(
        &with_file(Some(0o600), Some(PASS)),
        "a wrong passphrase in the file",
    );
    assert!(line.contains("wrong passphrase"), "{line}");
    std::fs::remove_file(&file).unwrap();
    let line = failed(&with_file(None, None), "a missing passphrase file");
    assert!(line.contains("passphrase"), "{line}");
}

/// Starts `nano-client args` in `home` with the passphrase, its stdout piped.
fn spawn(home: &Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(common::client_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("NANO_PASSPHRASE", PASS)
        .env_remove("NANO_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `nano-client args` in `home` and kills it with SIGKILL after `after` (unless it ended
/// first); returns its stdout and whether it ended on its own, successfully.
fn run_killed(home: &Path, args: &[&str], after: std::time::Duration) -> (String, bool) {
    use std::io::Read;
    let mut child = spawn(home, args);
    let deadline = std::time::Instant::now() + after;
    let finished = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if std::time::Instant::now() >= deadline {
            // SIGKILL: no destructor, no flush, no chance to finish a write.
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (out, finished)
}

/// `kill -9` of `send` and of `receive` at points spread over a whole run neither loses a
/// message that was confirmed nor reuses a message key: every confirmed message is shown,
/// nothing is rejected, and the sessions carry on both ways afterwards (PROTOCOL.md §13).
#[tokio::test]
async fn kill_9_at_any_point_loses_nothing_and_reuses_no_key() {
    let relay = Relay::start();
    let (_tmp, alice, bob) = alice_and_bob_registered(&relay, "hybrid");
    let hybrid = ["--crypto-mode", "hybrid"];
    fn send(text: &str) -> [&str; 5] {
        ["send", "bob", text, "--crypto-mode", "hybrid"]
    }
    // How long a whole send and a whole receive take here: kills are spread over that.
    let t0 = std::time::Instant::now();
    ok(&alice, None, &send("first"));
    let send_time = t0.elapsed();
    let mut confirmed = vec!["first".to_owned()];
    for k in 1..8u32 {
        let text = format!("killed send {k}");
        let (out, finished) = run_killed(&alice, &send(&text), send_time * k / 8);
        if finished {
            assert!(out.contains("sent"), "{out}");
            confirmed.push(text);
        }
    }
    ok(&alice, None, &send("last"));
    confirmed.push("last".to_owned());

    let t0 = std::time::Instant::now();
    let probe = cli(&bob, Some(PASS), None, &["receive", "--json"]);
    let receive_time = t0.elapsed();
    let mut shown = stdout(&probe);
    // That receive showed and acknowledged everything: send more to kill receives over.
    let mut more = Vec::new();
    for k in 0..6 {
        let text = format!("for a killed receive {k}");
        ok(&alice, None, &send(&text));
        more.push(text);
    }
    for k in 1..8u32 {
        let (out, _) = run_killed(&bob, &["receive", "--json"], receive_time * k / 8);
        shown.push_str(&out);
    }
    let last = cli(&bob, Some(PASS), None, &["receive", "--json"]);
    assert!(
        last.status.success() && stderr(&last).is_empty(),
        "a receive after the kills reported:\n{}",
        stderr(&last)
    );
    shown.push_str(&stdout(&last));
    let texts: std::collections::BTreeSet<String> = shown
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            assert_eq!(v["session"], true, "{v}");
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    for t in confirmed.iter().chain(&more) {
        assert!(
            texts.contains(t),
            "{t:?} was confirmed and never shown: {texts:?}"
        );
    }
    // The ratchets carry on both ways: no key was used twice, no state went back.
    ok(
        &bob,
        None,
        &["send", "alice", "still here", hybrid[0], hybrid[1]],
    );
    let o = ok(&alice, None, &["receive", "--json"]);
    assert!(o.contains("still here"), "{o}");
    ok(&alice, None, &send("and again"));
    let o = cli(&bob, Some(PASS), None, &["receive", "--json"]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("and again"), "{}", stdout(&o));
}
