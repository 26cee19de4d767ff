//! `nano-bench crypto --json` prints the documented object with a positive rate in every cell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// Runs nano-bench with `args`; its standard output, after asserting success.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nano-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn crypto_json_has_every_cell() {
    let v: serde_json::Value =
        serde_json::from_str(&bench(&["crypto", "--json", "--quick"])).unwrap();
    for table in ["single_core", "all_cores"] {
        for mode in ["classical", "hybrid", "quantum"] {
            for op in ["keygen", "key_exchange", "sign", "verify", "symmetric"] {
                let n = v[table][mode][op].as_u64();
                assert!(n.is_some_and(|n| n > 0), "{table}.{mode}.{op} = {n:?}");
            }
            for op in ["session_handshake", "session_encrypt", "session_decrypt"] {
                let n = v[table][mode][op].as_u64();
                assert!(n.is_some_and(|n| n > 0), "{table}.{mode}.{op} = {n:?}");
            }
            assert_eq!(v[table][mode].as_object().unwrap().len(), 8);
        }
    }
    let prims = v["primitives"].as_object().unwrap();
    for name in [
        "x25519_dh",
        "xwing_encaps",
        "xwing_decaps",
        "mlkem1024_decaps",
        "mldsa87_verify_1k",
        "aes256gcm_seal_1k",
    ] {
        assert!(prims[name].as_u64().is_some_and(|n| n > 0), "{name}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_nano-bench"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

/// `nano-bench sizes` seals real envelopes: each adds exactly the overhead PROTOCOL.md §6
/// states for its mode, and the JSON frame (base64) is larger than the binary one.
#[test]
fn sizes_match_the_documented_envelope_overhead() {
    let text = bench(&["sizes", "--plaintext", "0,100,5000"]);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 9, "{text}");
    for row in rows {
        let n = |i: usize| row[i].parse::<usize>().unwrap();
        let overhead = match row[0] {
            "classical" => 207,
            "hybrid" => 4604,
            "quantum" => 6306,
            other => panic!("unknown mode {other}"),
        };
        assert_eq!(n(2) - n(1), overhead, "{row:?}");
        assert!(n(4) > n(6) && n(6) > n(2), "{row:?}");
    }
}

/// Session rows: a steady-state message adds exactly `Session::steady_overhead` (at most 64
/// bytes), and the 100-message average includes the prekey bundle and the handshake.
#[test]
fn sizes_json_has_session_rows_within_the_documented_overhead() {
    let v: serde_json::Value =
        serde_json::from_str(&bench(&["sizes", "--plaintext", "1024", "--json"])).unwrap();
    for mode in nano_crypto::CryptoMode::ALL {
        let row = &v["session"][mode.as_str()]["1024"];
        let steady = row["steady_overhead_bytes"].as_u64().unwrap() as usize;
        assert_eq!(
            steady,
            nano_crypto::Session::steady_overhead(mode),
            "{mode}"
        );
        assert!(steady <= 64);
        let bundle = row["bundle_bytes"].as_u64().unwrap() as f64;
        let handshake = row["handshake_bytes"].as_u64().unwrap() as f64;
        let avg = row["avg_overhead_pct_100"].as_f64().unwrap();
        // At least the bundle and the handshake's overhead spread over 100 KiB of plaintext.
        assert!(
            avg > (bundle + handshake - 1024.0) / 102_400.0 * 100.0,
            "{mode} {avg}"
        );
        // Binary frames add their framing to every message and to the bundle: 8 bytes and the
        // 9-byte recipient name per send_message (PROTOCOL.md §11), at least.
        let framed = row["frame_overhead_pct_100"].as_f64().unwrap();
        assert!(
            framed >= avg + 100.0 * 17.0 / 1024.0 && framed < avg + 100.0 * 64.0 / 1024.0,
            "{mode} {framed} vs {avg}"
        );
        assert!(
            v["sealed"][mode.as_str()]["1024"]["envelope_bytes"]
                .as_u64()
                .is_some()
        );
    }
}
