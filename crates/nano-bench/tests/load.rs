//! A short load run through the real binaries: a spawned relay, real clients sealing and
//! opening every message. Asserts correctness only (no loss, no errors, every message received
//! verified and decrypted, key exchanges completed), never timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn load(args: &[&str]) -> serde_json::Value {
    let bench = Path::new(env!("CARGO_BIN_EXE_nano-bench"));
    // `load` spawns the nano-relay binary that sits beside nano-bench.
    nano_testkit::build_relay_bin(bench);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let out = Command::new(bench)
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nano-bench load failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

fn assert_clean(r: &serde_json::Value) {
    let n = |k: &str| {
        r[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {r}"))
    };
    assert!(n("messages_sent") > 0, "{r}");
    assert_eq!(n("messages_acked"), n("messages_sent"), "{r}");
    assert_eq!(n("messages_received"), n("messages_acked"), "{r}");
    assert_eq!(n("lost"), 0, "{r}");
    // Nothing handed out twice; redeliveries are counted (a number, whatever it is).
    assert_eq!(n("duplicates"), 0, "{r}");
    n("redelivered");
    // Every receipt's ack was applied by the relay, by its own count.
    assert_eq!(n("relay_acks_applied"), n("messages_received"), "{r}");
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number in {r}"));
    // Messages went through in measurable time, through a relay process that was sampled.
    for k in [
        "throughput_msgs_per_s",
        "relay_rss_mb_max",
        "connections_max",
        "duration_s",
    ] {
        assert!(f(&r[k]) > 0.0, "{k} in {r}");
    }
    // Latency percentiles of received messages: positive and in order.
    let l = &r["latency_ms"];
    let (p50, p95, p99, max) = (f(&l["p50"]), f(&l["p95"]), f(&l["p99"]), f(&l["max"]));
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max, "{l}");
}

#[test]
fn a_short_scenario_loses_nothing() {
    let charts = tempfile::tempdir().unwrap();
    let svg = charts.path().join("run.svg");
    let png = charts.path().join("run.png");
    let r = load(&[
        "--users",
        "8",
        "--time-scale",
        "0.01",
        "--messages-per-user",
        "3",
        "--crypto-mode",
        "hybrid",
        "--chart",
        svg.to_str().unwrap(),
        "--chart",
        png.to_str().unwrap(),
    ]);
    assert_clean(&r);
    // The charts mark the scenario's phases and label both panels.
    let svg = std::fs::read_to_string(&svg).unwrap();
    for text in [
        "warm-up",
        "sustained",
        "peak",
        "received (msg/s)",
        "latency (ms, log scale)",
        "RSS (MB)",
    ] {
        assert!(svg.contains(text), "{text:?} missing from the SVG chart");
    }
    assert!(
        std::fs::read(&png)
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    // The timeline behind them: every received message in one of its seconds.
    let received: u64 = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["received"].as_u64().unwrap())
        .sum();
    assert_eq!(received, r["messages_received"].as_u64().unwrap(), "{r}");
    assert_eq!(r["crypto_mode"], "hybrid");
    assert!(r["key_exchanges"].as_u64().unwrap() > 0, "{r}");
    // The offered load is what was scheduled: every scheduled message was sent, and the key
    // exchangers offered none.
    let offered = r["offered"].as_array().unwrap();
    let phases: Vec<&str> = offered
        .iter()
        .map(|o| o["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["warm-up", "sustained", "peak"], "{r}");
    let scheduled: u64 = offered
        .iter()
        .map(|o| o["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(scheduled, r["messages_sent"].as_u64().unwrap(), "{r}");
    for o in offered {
        let senders = o["sender_users"].as_u64().unwrap();
        assert_eq!(o["messages"].as_u64().unwrap(), senders * 3, "{o}");
    }
}

/// A chart in a format `--chart` cannot write is refused before the run.
#[test]
fn a_chart_of_an_unknown_format_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_nano-bench"))
        .args(["load", "--users", "2", "--chart", "run.jpg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".svg or .png"), "{err}");
}

#[test]
fn a_short_closed_loop_loses_nothing() {
    let r = load(&[
        "--users",
        "4",
        "--max-throughput",
        "--connections",
        "2",
        "--pipeline",
        "4",
        "--duration",
        "1",
        "--crypto-mode",
        "quantum",
    ]);
    assert_clean(&r);
    assert_eq!(r["crypto_mode"], "quantum");
    assert_eq!(r["payloads"], "sessions");
}

/// `--warm-up` starts every session before the clock: its messages are delivered like any
/// other (nothing lost), and the run says it was warmed up.
#[test]
fn a_warmed_up_closed_loop_loses_nothing() {
    let r = load(&[
        "--users",
        "6",
        "--max-throughput",
        "--warm-up",
        "--connections",
        "2",
        "--pipeline",
        "2",
        "--duration",
        "1",
        "--crypto-mode",
        "hybrid",
    ]);
    assert_clean(&r);
    assert!(r["scenario"].as_str().unwrap().contains("warmed up"), "{r}");
    // At least the warm-up: one message to each of the 6 users.
    assert!(r["messages_received"].as_u64().unwrap() >= 6, "{r}");
}

/// `--sealed` sends sealed envelopes, and says so.
#[test]
fn a_sealed_closed_loop_loses_nothing() {
    let r = load(&[
        "--users",
        "4",
        "--max-throughput",
        "--sealed",
        "--connections",
        "2",
        "--pipeline",
        "2",
        "--duration",
        "1",
    ]);
    assert_clean(&r);
    assert_eq!(r["payloads"], "sealed envelopes");
}

#[test]
fn a_short_presealed_run_loses_nothing() {
    let r = load(&[
        "--users",
        "4",
        "--max-throughput",
        "--presealed",
        "--connections",
        "2",
        "--pipeline",
        "8",
        "--duration",
        "1",
        "--crypto-mode",
        "classical",
    ]);
    assert_clean(&r);
    assert_eq!(r["opened"], false);
}

#[test]
fn a_short_hold_counts_only_logged_in_connections() {
    let r = load(&["--users", "2", "--hold", "20", "--crypto-mode", "classical"]);
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    assert_eq!(r["scenario"], "hold 20");
    // The relay itself counts the 20 held and the 2 receivers.
    assert_eq!(r["relay_active_connections"].as_u64(), Some(22), "{r}");
    let f = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {r}"))
    };
    assert!(
        f("relay_rss_mb_before") > 0.0 && f("relay_rss_mb_settled") > 0.0,
        "{r}"
    );
}
