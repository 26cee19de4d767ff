//! Short `nano-bench chaos` runs through the real binaries: faults under load with real SDK
//! clients (hybrid mode), then the report's books. Correctness only, never timing: nothing
//! acknowledged is lost, no message is shown twice, no send fails, every fault was injected.
//! PostgreSQL runs get a database of their own (`NANO_TEST_POSTGRES_URL`); the PostgreSQL fault
//! terminates that database's server processes only, and Redis is a private `redis-server`, so
//! no shared service is ever restarted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nano_testkit::PgDb;

/// A short load: 20 users, 4 senders, 150 msg/s for 6 s.
const LOAD: [&str; 8] = [
    "--users",
    "20",
    "--senders",
    "4",
    "--rate",
    "150",
    "--duration",
    "6",
];

/// Bound of one run (a safety net: a run takes about 10 s).
const RUN_WAIT: Duration = Duration::from_secs(150);

/// Runs `nano-bench chaos ARGS --json FILE`; returns the JSON report after asserting success
/// (the report, or the run's stderr, in the message otherwise).
fn chaos(args: &[&str]) -> serde_json::Value {
    let bench = Path::new(env!("CARGO_BIN_EXE_nano-bench"));
    // `chaos` spawns the nano-relay binary that sits beside nano-bench.
    nano_testkit::build_relay_bin(bench);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("chaos.json");
    let mut cmd = Command::new(bench);
    cmd.arg("chaos")
        .args(LOAD)
        .args(args)
        .arg("--json")
        .arg(&json);
    let out = nano_testkit::run_within(&mut cmd, None, RUN_WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = match std::fs::read(&json) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => panic!("nano-bench chaos wrote no report:\n{stderr}"),
    };
    assert!(
        out.status.success(),
        "nano-bench chaos failed:\n{stderr}\n{report:#}"
    );
    report
}

/// Nothing acknowledged lost, nothing shown twice, no send failed, every fault injected.
fn assert_clean(r: &serde_json::Value, scenario: &str, faults: u64) {
    let n = |k: &str| {
        r[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {r:#}"))
    };
    assert_eq!(r["scenario"], scenario, "{r:#}");
    assert_eq!(n("faults"), faults, "{r:#}");
    assert!(n("messages_acked") > 0, "{r:#}");
    assert_eq!(n("lost"), 0, "{r:#}");
    assert_eq!(n("duplicates_shown"), 0, "{r:#}");
    assert_eq!(n("sends_failed"), 0, "{r:#}");
    assert!(r["send_errors"].as_object().unwrap().is_empty(), "{r:#}");
    assert!(n("messages_delivered") >= n("messages_acked"), "{r:#}");
    assert_eq!(n("misrouted") + n("rejected") + n("unparsable"), 0, "{r:#}");
    assert_eq!(r["fault_records"].as_array().unwrap().len() as u64, faults);
    assert!(r["failures"].as_array().unwrap().is_empty(), "{r:#}");
}

/// Whether `bin` runs (is on PATH).
fn on_path(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn relay_kill_on_sqlite_loses_nothing() {
    let r = chaos(&[
        "--scenario",
        "relay-kill",
        "--faults",
        "2",
        "--outage",
        "0.5",
    ]);
    assert_clean(&r, "relay-kill", 2);
    assert_eq!(r["storage"], "sqlite");
}

#[test]
fn relay_kill_on_postgres_loses_nothing() {
    let Some(db) = PgDb::create("relay_kill_on_postgres_loses_nothing") else {
        return;
    };
    let r = chaos(&[
        "--scenario",
        "relay-kill",
        "--storage-url",
        &db.url,
        "--faults",
        "2",
        "--outage",
        "0.5",
    ]);
    assert_clean(&r, "relay-kill", 2);
    assert!(r["storage"].as_str().unwrap().contains(&db.name), "{r:#}");
}

#[test]
fn postgres_backends_terminated_lose_nothing() {
    let Some(db) = PgDb::create("postgres_backends_terminated_lose_nothing") else {
        return;
    };
    let r = chaos(&[
        "--scenario",
        "postgres-restart",
        "--pg-fault",
        "terminate",
        "--storage-url",
        &db.url,
        "--faults",
        "3",
    ]);
    assert_clean(&r, "postgres-restart", 3);
    assert!(
        r["fault"]
            .as_str()
            .unwrap()
            .contains("pg_terminate_backend"),
        "{r:#}"
    );
}

#[test]
fn redis_restart_under_two_relays_loses_nothing() {
    let test = "redis_restart_under_two_relays_loses_nothing";
    if !on_path("redis-server") || !on_path("redis-cli") {
        eprintln!("skipping {test}: redis-server or redis-cli is not on PATH");
        return;
    }
    let Some(db) = PgDb::create(test) else {
        return;
    };
    let r = chaos(&[
        "--scenario",
        "redis-restart",
        "--redis-private",
        "--storage-url",
        &db.url,
        "--faults",
        "2",
        "--outage",
        "0.5",
    ]);
    assert_clean(&r, "redis-restart", 2);
    assert!(r["fault"].as_str().unwrap().contains("private"), "{r:#}");
}

#[test]
fn postgres_scenarios_need_a_postgres_url() {
    for scenario in ["postgres-restart", "redis-restart"] {
        let out = Command::new(env!("CARGO_BIN_EXE_nano-bench"))
            .args(["chaos", "--scenario", scenario])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs --storage-url postgres://"), "{err}");
    }
}
