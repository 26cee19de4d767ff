//! The relay's HTTP API and command line, against the real binary: health, readiness, metrics,
//! relay information, registration, lookup and key rotation; `validate-config` and
//! `init-config`; graceful shutdown on SIGTERM and SIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_common;

use std::path::PathBuf;

use nano_crypto::{CryptoMode, PublicBundle, SigContext};
use nano_proto::rest::{
    RegisterRequest, RotateKeysRequest, UserResponse, claim_content, rotation_content,
};
use nano_proto::{Bytes, Username};
use relay_common::{
    Config, Relay, User, metric, output_within, random_id, relay_command, start_with_alice_and_bob,
};

/// A shipped template, `config/relay.{env}.toml`.
fn template(env: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(format!("relay.{env}.toml"))
}

#[tokio::test]
async fn health_ready_openapi_and_unknown_routes() {
    let relay = Relay::start(&Config::new()).await;
    let (status, body) = relay.get_json("/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let (status, body) = relay.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let (status, text) = relay.get("/openapi.json").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/v1/relay",
        "/v1/users",
        "/v1/users/{name}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "openapi.json lacks {path}"
        );
    }

    let (status, body) = relay.get_json("/v2/nothing/here").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn metrics_expose_the_guides_names() {
    let (relay, alice, _bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut a, _) = alice.connect(&relay).await;
    a.send_message("bob", "m", CryptoMode::Hybrid, Some(random_id()))
        .await;
    let mut other = relay.connect().await;
    other.send_text(r#"{"type":"no_such_thing"}"#).await;
    other.expect_error("unknown_type").await;

    let text = relay.metrics().await;
    for (series, value) in [
        (
            "nano_messenger_messages_processed_total{crypto_mode=\"hybrid\"}",
            1.0,
        ),
        ("nano_messenger_active_connections", 2.0),
        ("nano_messenger_errors_total{code=\"unknown_type\"}", 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series}\n{text}");
    }
    for name in [
        "nano_messenger_messages_processed_total",
        "nano_messenger_active_connections",
        "nano_messenger_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE line for {name}\n{text}"
        );
    }
}

#[tokio::test]
async fn relay_info_describes_the_relay_and_survives_a_restart() {
    let mut relay = Relay::start(&Config::new()).await;
    let (status, raw) = relay.get_json("/v1/relay").await;
    assert_eq!(status, 200, "{raw}");
    for field in [
        "version",
        "relay_id",
        "identity",
        "websocket_url",
        "modes",
        "minimum_crypto_mode",
        "allow_anonymous_send",
        "acceleration",
    ] {
        assert!(raw.get(field).is_some(), "/v1/relay lacks {field}: {raw}");
    }
    let info = relay.info().await;
    assert_eq!(info.relay_id.len(), 64);
    assert!(
        info.relay_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    let bundle = PublicBundle::from_bytes(info.identity.as_slice()).expect("identity bundle");
    assert_eq!(bundle.fingerprint().to_hex(), info.relay_id);
    assert_eq!(info.websocket_url, relay.ws);
    assert_eq!(info.modes, CryptoMode::ALL.to_vec());
    assert_eq!(info.minimum_crypto_mode, CryptoMode::Classical);
    assert!(info.allow_anonymous_send);
    assert!(!info.version.is_empty());

    // The challenge names the same relay.
    let mut ws = relay.connect().await;
    assert_eq!(ws.challenge().await.relay_id, info.relay_id);
    drop(ws);

    // The identity is kept in the data dir: same relay id after a restart.
    assert!(relay.terminate().await.success());
    relay.restart().await;
    assert_eq!(relay.info().await.relay_id, info.relay_id);
}

#[tokio::test]
async fn register_lookup_and_conflicts() {
    let relay = Relay::start(&Config::new()).await;
    let alice = User::new("alice", CryptoMode::Classical);
    let created = alice.register(&relay).await;
    assert_eq!(created.username.as_str(), "alice");
    assert_eq!(created.fingerprint, alice.identity.fingerprint().to_hex());
    assert_eq!(created.min_mode, CryptoMode::Classical);
    assert_eq!(created.bundle.0, alice.identity.public_bundle().to_bytes());

    let (status, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(status, 200, "{body}");
    let found: UserResponse = serde_json::from_value(body).unwrap();
    assert_eq!(found, created);

    // The name is taken, whoever asks; the first owner keeps it.
    let impostor = User::new("alice", CryptoMode::Hybrid);
    let (status, body) = relay
        .post_json("/v1/users", &impostor.claim(CryptoMode::Hybrid))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "name_taken");
    // Names are case-insensitive and look-alikes are one name: each is taken too, and the
    // claim is checked over the canonical (lowercase) name.
    for look_alike in ["Alice", "ALICE", "a1ice", "A1ICE"] {
        let impostor = User::new(look_alike, CryptoMode::Hybrid);
        let (status, body) = relay
            .post_json("/v1/users", &impostor.claim(CryptoMode::Hybrid))
            .await;
        assert_eq!(
            (status, &body["code"]),
            (409, &"name_taken".into()),
            "{look_alike}: {body}"
        );
    }
    for spelling in ["Alice", "ALICE"] {
        let (status, body) = relay.get_json(&format!("/v1/users/{spelling}")).await;
        assert_eq!(
            (status, &body["username"]),
            (200, &"alice".into()),
            "{body}"
        );
    }
    let (status, again) = relay
        .post_json("/v1/users", &alice.claim(CryptoMode::Classical))
        .await;
    assert_eq!(status, 409, "{again}");
    let (_, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(body["fingerprint"], alice.identity.fingerprint().to_hex());

    let (status, body) = relay.get_json("/v1/users/nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
    let (status, body) = relay.get_json("/v1/users/not%20a%20name").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_field");

    // Bodies that are not a registration.
    let (status, body) = relay.post_raw("/v1/users", "{\"username\":").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "malformed_body");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("malformed request body: not valid JSON")),
        "{body}"
    );
    let mut extra = serde_json::to_value(alice.claim(CryptoMode::Classical)).unwrap();
    extra["admin"] = serde_json::Value::Bool(true);
    let (status, body) = relay.post_json("/v1/users", &extra).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_field");
}

#[tokio::test]
async fn registration_with_a_bad_proof_of_possession_is_refused() {
    let relay = Relay::start(&Config::new()).await;
    let mallory = User::new("mallory", CryptoMode::Classical);
    let other = User::new("other", CryptoMode::Classical);
    let good = mallory.claim(CryptoMode::Classical);

    // `good` with its signature replaced by `signer`'s classical signature of `content`.
    let signed_by = |signer: &User, ctx: SigContext, content: &[u8]| {
        let mut r = good.clone();
        r.signature = Bytes(signer.sign(CryptoMode::Classical, ctx, content));
        r
    };
    let mallorys_claim = claim_content(&mallory.name, mallory.identity.public_bundle());

    let mut cases: Vec<(&str, RegisterRequest)> = Vec::new();
    // Signed over another name's claim.
    let r = signed_by(
        &mallory,
        SigContext::ProofOfPossession,
        &claim_content(
            &Username::new("mallory2").unwrap(),
            mallory.identity.public_bundle(),
        ),
    );
    cases.push(("signature over another name", r));
    // Signed by a key that is not in the bundle.
    let r = signed_by(&other, SigContext::ProofOfPossession, &mallorys_claim);
    cases.push(("signature by another key", r));
    // Right bytes, wrong context.
    let r = signed_by(&mallory, SigContext::RelayAuth, &mallorys_claim);
    cases.push(("signature for another context", r));
    // Truncated.
    let mut r = good.clone();
    r.signature.0.truncate(10);
    cases.push(("truncated signature", r));
    // A quantum claim carrying a classical signature.
    let mut r = good.clone();
    r.crypto_mode = CryptoMode::Quantum;
    cases.push(("signature of another mode", r));
    // A bundle whose own proofs of possession no longer hold.
    let mut r = good.clone();
    r.bundle.0[5] ^= 0x01;
    cases.push(("tampered bundle", r));

    for (what, req) in cases {
        let (status, body) = relay.post_json("/v1/users", &req).await;
        assert_eq!(status, 403, "{what}: {body}");
        // A claim signature that fails is `invalid_signature`; a bundle whose own proofs fail
        // is an unusable key bundle, `invalid_key`.
        let expected = if what == "tampered bundle" {
            "invalid_key"
        } else {
            "invalid_signature"
        };
        assert_eq!(body["code"], expected, "{what}: {body}");
    }
    let (status, _) = relay.get_json("/v1/users/mallory").await;
    assert_eq!(status, 404, "no refused claim registered the name");
    // The good claim still works.
    let (status, body) = relay.post_json("/v1/users", &good).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn an_oversized_body_gets_a_json_error() {
    let relay = Relay::start(&Config::new()).await;
    let body = format!("{{\"username\":\"{}\"}}", "a".repeat(300 * 1024));
    let (status, text) = relay.request_raw("POST", "/v1/users", &body).await;
    assert_eq!(status, 413, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text:?}"));
    assert!(
        json["code"].is_string() && json["message"].is_string(),
        "{json}"
    );
    // The relay still serves the next request.
    let (status, _) = relay.get_json("/health").await;
    assert_eq!(status, 200);
}

/// Rotation needs the current key and the new key's consent over a statement naming the
/// current key version: refused otherwise, accepted with both, then served; a captured
/// statement is spent once used, also after rotating back; one bundle belongs to one name.
async fn key_rotation(cfg: Config) {
    let relay = Relay::start(&cfg).await;
    let alice = User::new("alice", CryptoMode::Classical);
    alice.register(&relay).await;
    let bob = User::new("bob", CryptoMode::Classical);
    bob.register(&relay).await;
    let alice2 = User::new("alice", CryptoMode::Classical);
    let mallory = User::new("mallory", CryptoMode::Classical);
    let (old_fp, new_fp) = (alice.identity.fingerprint(), alice2.identity.fingerprint());
    let content = rotation_content(&alice.name, 0, &old_fp, &new_fp);
    let mode = CryptoMode::Classical;
    let request =
        |to: &User, current: &User, new: &User, version: u64, content: &[u8]| RotateKeysRequest {
            bundle: Bytes(to.identity.public_bundle().to_bytes()),
            crypto_mode: mode,
            key_version: version,
            signature: Bytes(current.sign(mode, SigContext::KeyRotation, content)),
            new_signature: Bytes(new.sign(mode, SigContext::KeyRotation, content)),
        };

    let wrong = rotation_content(&alice.name, 0, &new_fp, &old_fp);
    for (what, req) in [
        (
            "another user's key",
            request(&alice2, &mallory, &alice2, 0, &content),
        ),
        (
            "the new key itself",
            request(&alice2, &alice2, &alice2, 0, &content),
        ),
        (
            "without the new key's consent",
            request(&alice2, &alice, &mallory, 0, &content),
        ),
        (
            "the current key over the wrong fingerprints",
            request(&alice2, &alice, &alice2, 0, &wrong),
        ),
    ] {
        let (status, body) = relay.put_json("/v1/users/alice/keys", &req).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["code"], "invalid_signature", "{what}: {body}");
    }
    // A statement for another key version is stale.
    let stale = rotation_content(&alice.name, 5, &old_fp, &new_fp);
    let (status, body) = relay
        .put_json(
            "/v1/users/alice/keys",
            &request(&alice2, &alice, &alice2, 5, &stale),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (403, &"invalid_key".into()),
        "{body}"
    );
    // Identity misbinding: mallory cannot move a name onto bob's bundle (bob never consents),
    // and a bundle already registered cannot be claimed by a second name.
    mallory.register(&relay).await;
    let onto_bob = rotation_content(
        &mallory.name,
        0,
        &mallory.identity.fingerprint(),
        &bob.identity.fingerprint(),
    );
    let (status, body) = relay
        .put_json(
            "/v1/users/mallory/keys",
            &request(&bob, &mallory, &mallory, 0, &onto_bob),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (403, &"invalid_signature".into()),
        "{body}"
    );
    let bob_again = User {
        name: nano_proto::Username::new("bob2").unwrap(),
        identity: nano_crypto::Identity::from_secret_bytes(
            &bob.identity.to_secret_bytes(),
            &mut nano_crypto::OsRng,
        )
        .unwrap(),
    };
    let (status, body) = relay.post_json("/v1/users", &bob_again.claim(mode)).await;
    assert_eq!(
        (status, &body["code"]),
        (409, &"key_taken".into()),
        "{body}"
    );

    let (_, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(
        body["fingerprint"],
        old_fp.to_hex(),
        "a refused rotation changed the keys"
    );
    assert_eq!(body["key_version"], 0);

    // Signed by the current key and the new one: accepted, and the new bundle is served.
    let good = request(&alice2, &alice, &alice2, 0, &content);
    let (status, body) = relay.put_json("/v1/users/alice/keys", &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fingerprint"], new_fp.to_hex());
    let (status, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(status, 200, "{body}");
    let served: UserResponse = serde_json::from_value(body).unwrap();
    assert_eq!(served.fingerprint, new_fp.to_hex());
    assert_eq!(served.min_mode, CryptoMode::Classical);
    assert_eq!(served.key_version, 1);
    assert_eq!(served.bundle.0, alice2.identity.public_bundle().to_bytes());

    // Replaying the same rotation fails: its key version is spent.
    let (status, body) = relay.put_json("/v1/users/alice/keys", &good).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &"invalid_key".into()),
        "{body}"
    );
    // Rotating an unknown user: not found.
    let (status, body) = relay.put_json("/v1/users/nobody/keys", &good).await;
    assert_eq!(status, 404, "{body}");

    // Authentication follows the rotation.
    let mut ws = relay.connect().await;
    let ch = ws.challenge().await;
    ws.send(&alice.auth(CryptoMode::Classical, &ch)).await;
    ws.expect_error("auth_failed").await;
    let ch = ws.challenge().await;
    alice2.login_with(&mut ws, CryptoMode::Classical, &ch).await;

    // Back to the first keys (A→B→A): the captured A→B statement is still spent.
    let back = rotation_content(&alice.name, 1, &new_fp, &old_fp);
    let (status, body) = relay
        .put_json(
            "/v1/users/alice/keys",
            &request(&alice, &alice2, &alice, 1, &back),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = relay.put_json("/v1/users/alice/keys", &good).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &"invalid_key".into()),
        "{body}"
    );
    let (_, body) = relay.get_json("/v1/users/alice").await;
    assert_eq!(
        (&body["fingerprint"], &body["key_version"]),
        (&old_fp.to_hex().into(), &2.into())
    );
}

on_each_storage!(key_rotation: key_rotation_sqlite, key_rotation_postgres);

#[test]
fn validate_config_accepts_the_shipped_templates() {
    for env in ["development", "production"] {
        let path = template(env);
        // The production template names files of a production machine: its text is checked.
        let out = output_within(
            relay_command()
                .arg("validate-config")
                .args((env == "production").then_some("--syntax-only"))
                .arg("--config")
                .arg(&path),
        );
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

#[test]
fn validate_config_rejects_bad_files_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[server]\napi_port = 0\nbogus_knob = 1\n", "bogus_knob"),
        ("[no_such_section]\nx = 1\n", "no_such_section"),
        ("[limits]\nmax_frame_bytes = 1\n", "limits.max_frame_bytes"),
        ("[storage]\nurl = \"mysql://x\"\n", "storage.url"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = output_within(
            relay_command()
                .arg("validate-config")
                .arg("--config")
                .arg(&path),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(
            stderr.contains(key),
            "{text:?}: stderr does not name {key}: {stderr}"
        );
    }
    // The relay itself refuses to start on such a file, naming the key.
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\napi_port = 0\nwebsocket_port = 0\nbogus_knob = 1\n",
    )
    .unwrap();
    let out = output_within(relay_command().arg("--config").arg(&path));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_knob"));
    assert!(
        out.stdout.is_empty(),
        "a refused relay printed a listening line"
    );
}

#[test]
fn init_config_output_validates() {
    let dir = tempfile::tempdir().unwrap();
    for env in ["development", "production"] {
        let path = dir.path().join(format!("{env}.toml"));
        let out = output_within(
            relay_command()
                .args(["init-config", "--environment", env, "--output"])
                .arg(&path),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, std::fs::read_to_string(template(env)).unwrap());
        let out = output_within(
            relay_command()
                .arg("validate-config")
                .args((env == "production").then_some("--syntax-only"))
                .arg("--config")
                .arg(&path),
        );
        assert!(
            out.status.success(),
            "{env}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Standard output carries the same template.
        let out = output_within(relay_command().args(["init-config", "--environment", env]));
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), written);

        // An existing file is never overwritten.
        let out = output_within(
            relay_command()
                .args(["init-config", "--environment", env, "--output"])
                .arg(&path),
        );
        assert!(!out.status.success(), "{env}: overwrote {}", path.display());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
    }
}

#[tokio::test]
async fn sigterm_and_sigint_drain_and_exit_zero() {
    let (mut relay, alice, bob) = start_with_alice_and_bob(&Config::new()).await;
    let (mut a, _) = alice.connect(&relay).await;
    let id = random_id();
    assert_eq!(
        a.send_message("bob", "before shutdown", CryptoMode::Hybrid, Some(id))
            .await,
        (id, false)
    );
    // An idle session (its hello answered, so its loop runs).
    let mut idle = relay.connect().await;
    idle.challenge().await;

    let status = relay.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    // Open connections were closed with a reason, not dropped.
    for ws in [&mut a, &mut idle] {
        let (_, close) = ws.closed().await;
        let close = close.expect("a close frame before the exit");
        assert_eq!(u16::from(close.code), 1001);
        assert_eq!(close.reason.as_str(), "relay shutting down");
    }

    // What was acknowledged is there after the restart; SIGINT stops it as cleanly.
    relay.restart().await;
    let (_b, login) = bob.connect(&relay).await;
    assert_eq!(
        login.msgs.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![id]
    );
    let status = relay.signal("-INT").await;
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

/// `validate-config` checks the configuration against this machine too, naming the key: the
/// production template's certificate does not exist here.
#[test]
fn validate_config_refuses_what_cannot_work_here() {
    let out = output_within(
        relay_command()
            .arg("validate-config")
            .arg("--config")
            .arg(template("production")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert_path") && err.contains("/etc/nano-relay/tls/cert.pem"),
        "{err}"
    );
}
