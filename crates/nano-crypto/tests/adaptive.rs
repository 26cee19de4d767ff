#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Adaptive mode selection: every rule of the table, thresholds at their edges, precedence, NaN, floors, `select_mode_within`, and serde.

use nano_crypto::{
    AdaptiveCryptoConfig, CryptoError, CryptoMode, DataClass, MessageContext, ThreatLevel,
};
use proptest::prelude::*;

use CryptoMode::{Classical, Hybrid, Quantum};

const THREATS: [ThreatLevel; 4] = [
    ThreatLevel::Low,
    ThreatLevel::Medium,
    ThreatLevel::High,
    ThreatLevel::Critical,
];
const CLASSES: [DataClass; 5] = [
    DataClass::Public,
    DataClass::Internal,
    DataClass::Confidential,
    DataClass::Classified,
    DataClass::TopSecret,
];

/// A context that triggers no rule at all under the default config: rule 9, hybrid.
fn calm() -> MessageContext {
    MessageContext {
        bandwidth_kbps: 100_000,
        latency_ms: 20,
        threat_level: ThreatLevel::Low,
        data_class: DataClass::Public,
        cpu_usage_percent: 10.0,
        battery_level_percent: 100.0,
    }
}

/// A context that triggers every classical rule (5–8) at once.
fn constrained() -> MessageContext {
    MessageContext {
        bandwidth_kbps: 10,
        latency_ms: 5_000,
        cpu_usage_percent: 99.0,
        battery_level_percent: 1.0,
        ..calm()
    }
}

fn check(cfg: &AdaptiveCryptoConfig, cases: &[(&str, MessageContext, CryptoMode)]) {
    for (name, ctx, want) in cases {
        assert_eq!(
            cfg.select_mode(ctx),
            *want,
            "case `{name}`: {ctx:?} under {cfg:?}"
        );
    }
}

#[test]
fn defaults_are_documented_values() {
    let cfg = AdaptiveCryptoConfig::default();
    assert_eq!(cfg.low_bandwidth_threshold, 1_000);
    assert_eq!(cfg.high_latency_threshold, 200);
    assert_eq!(cfg.threat_level, ThreatLevel::Low);
    assert_eq!(cfg.data_sensitivity, DataClass::Classified);
    assert_eq!(cfg.cpu_usage_threshold, 80.0);
    assert_eq!(cfg.battery_level_threshold, 20.0);
    // The default message context is well connected: rule 9.
    assert_eq!(cfg.select_mode(&MessageContext::default()), Hybrid);
}

#[test]
fn each_rule_in_isolation() {
    let cfg = AdaptiveCryptoConfig::default();
    let c = calm();
    check(
        &cfg,
        &[
            ("9: nothing applies", c, Hybrid),
            (
                "1: top secret",
                MessageContext {
                    data_class: DataClass::TopSecret,
                    ..c
                },
                Quantum,
            ),
            (
                "2: critical threat",
                MessageContext {
                    threat_level: ThreatLevel::Critical,
                    ..c
                },
                Quantum,
            ),
            (
                "3: high threat",
                MessageContext {
                    threat_level: ThreatLevel::High,
                    ..c
                },
                Hybrid,
            ),
            (
                "4: classified data (default sensitivity)",
                MessageContext {
                    data_class: DataClass::Classified,
                    ..c
                },
                Hybrid,
            ),
            (
                "5: low bandwidth",
                MessageContext {
                    bandwidth_kbps: 10,
                    ..c
                },
                Classical,
            ),
            (
                "6: high latency",
                MessageContext {
                    latency_ms: 5_000,
                    ..c
                },
                Classical,
            ),
            (
                "7: busy cpu",
                MessageContext {
                    cpu_usage_percent: 99.0,
                    ..c
                },
                Classical,
            ),
            (
                "8: low battery",
                MessageContext {
                    battery_level_percent: 1.0,
                    ..c
                },
                Classical,
            ),
            ("5-8 together", constrained(), Classical),
            (
                "medium threat is not a security rule",
                MessageContext {
                    threat_level: ThreatLevel::Medium,
                    ..constrained()
                },
                Classical,
            ),
            (
                "confidential is below the default sensitivity",
                MessageContext {
                    data_class: DataClass::Confidential,
                    ..constrained()
                },
                Classical,
            ),
        ],
    );
}

#[test]
fn thresholds_at_their_edges() {
    let cfg = AdaptiveCryptoConfig::default();
    let c = calm();
    let bw = |b| MessageContext {
        bandwidth_kbps: b,
        ..c
    };
    let lat = |l| MessageContext { latency_ms: l, ..c };
    let cpu = |p| MessageContext {
        cpu_usage_percent: p,
        ..c
    };
    let bat = |p| MessageContext {
        battery_level_percent: p,
        ..c
    };
    check(
        &cfg,
        &[
            // rule 5: strictly below 1000
            ("bandwidth 0", bw(0), Classical),
            ("bandwidth 999", bw(999), Classical),
            ("bandwidth 1000", bw(1000), Hybrid),
            ("bandwidth 1001", bw(1001), Hybrid),
            ("bandwidth max", bw(u32::MAX), Hybrid),
            // rule 6: strictly above 200
            ("latency 0", lat(0), Hybrid),
            ("latency 199", lat(199), Hybrid),
            ("latency 200", lat(200), Hybrid),
            ("latency 201", lat(201), Classical),
            ("latency max", lat(u32::MAX), Classical),
            // rule 7: strictly above 80.0
            ("cpu 79.9", cpu(79.9), Hybrid),
            ("cpu 80.0", cpu(80.0), Hybrid),
            ("cpu 80.1", cpu(80.1), Classical),
            ("cpu 100", cpu(100.0), Classical),
            ("cpu +inf", cpu(f32::INFINITY), Classical),
            ("cpu -inf", cpu(f32::NEG_INFINITY), Hybrid),
            // rule 8: strictly below 20.0
            ("battery 20.1", bat(20.1), Hybrid),
            ("battery 20.0", bat(20.0), Hybrid),
            ("battery 19.9", bat(19.9), Classical),
            ("battery 0", bat(0.0), Classical),
            ("battery -inf", bat(f32::NEG_INFINITY), Classical),
            ("battery +inf", bat(f32::INFINITY), Hybrid),
        ],
    );
}

#[test]
fn custom_thresholds_move_the_edges() {
    let cfg = AdaptiveCryptoConfig {
        low_bandwidth_threshold: 50,
        high_latency_threshold: 1_000,
        cpu_usage_threshold: 95.0,
        battery_level_threshold: 5.0,
        ..AdaptiveCryptoConfig::default()
    };
    let c = calm();
    check(
        &cfg,
        &[
            (
                "bandwidth 49",
                MessageContext {
                    bandwidth_kbps: 49,
                    ..c
                },
                Classical,
            ),
            (
                "bandwidth 50",
                MessageContext {
                    bandwidth_kbps: 50,
                    ..c
                },
                Hybrid,
            ),
            (
                "bandwidth 999 no longer low",
                MessageContext {
                    bandwidth_kbps: 999,
                    ..c
                },
                Hybrid,
            ),
            (
                "latency 1000",
                MessageContext {
                    latency_ms: 1_000,
                    ..c
                },
                Hybrid,
            ),
            (
                "latency 1001",
                MessageContext {
                    latency_ms: 1_001,
                    ..c
                },
                Classical,
            ),
            (
                "cpu 95.0",
                MessageContext {
                    cpu_usage_percent: 95.0,
                    ..c
                },
                Hybrid,
            ),
            (
                "cpu 95.1",
                MessageContext {
                    cpu_usage_percent: 95.1,
                    ..c
                },
                Classical,
            ),
            (
                "battery 5.0",
                MessageContext {
                    battery_level_percent: 5.0,
                    ..c
                },
                Hybrid,
            ),
            (
                "battery 4.9",
                MessageContext {
                    battery_level_percent: 4.9,
                    ..c
                },
                Classical,
            ),
        ],
    );

    // Threshold 0 bandwidth / u32::MAX latency switch those rules off entirely.
    let off = AdaptiveCryptoConfig {
        low_bandwidth_threshold: 0,
        high_latency_threshold: u32::MAX,
        ..AdaptiveCryptoConfig::default()
    };
    let ctx = MessageContext {
        bandwidth_kbps: 0,
        latency_ms: u32::MAX,
        ..calm()
    };
    assert_eq!(off.select_mode(&ctx), Hybrid);
}

#[test]
fn security_rules_take_precedence() {
    let cfg = AdaptiveCryptoConfig::default();
    let k = constrained();
    check(
        &cfg,
        &[
            (
                "top secret beats low battery",
                MessageContext {
                    data_class: DataClass::TopSecret,
                    battery_level_percent: 1.0,
                    ..calm()
                },
                Quantum,
            ),
            (
                "top secret beats every network/device rule",
                MessageContext {
                    data_class: DataClass::TopSecret,
                    ..k
                },
                Quantum,
            ),
            (
                "top secret beats high threat (rule 1 before 3)",
                MessageContext {
                    data_class: DataClass::TopSecret,
                    threat_level: ThreatLevel::High,
                    ..k
                },
                Quantum,
            ),
            (
                "critical beats public data and constraints",
                MessageContext {
                    threat_level: ThreatLevel::Critical,
                    data_class: DataClass::Public,
                    ..k
                },
                Quantum,
            ),
            (
                "critical beats classified (rule 2 before 4)",
                MessageContext {
                    threat_level: ThreatLevel::Critical,
                    data_class: DataClass::Classified,
                    ..k
                },
                Quantum,
            ),
            (
                "high threat beats low bandwidth",
                MessageContext {
                    threat_level: ThreatLevel::High,
                    bandwidth_kbps: 10,
                    ..calm()
                },
                Hybrid,
            ),
            (
                "high threat beats every constraint",
                MessageContext {
                    threat_level: ThreatLevel::High,
                    ..k
                },
                Hybrid,
            ),
            (
                "classified beats every constraint",
                MessageContext {
                    data_class: DataClass::Classified,
                    ..k
                },
                Hybrid,
            ),
        ],
    );
}

#[test]
fn configured_threat_level_is_a_baseline() {
    for (cfg_threat, msg_threat, want_calm, want_constrained) in [
        (ThreatLevel::Low, ThreatLevel::Low, Hybrid, Classical),
        (ThreatLevel::Medium, ThreatLevel::Low, Hybrid, Classical),
        (ThreatLevel::High, ThreatLevel::Low, Hybrid, Hybrid),
        (ThreatLevel::Critical, ThreatLevel::Low, Quantum, Quantum),
        (ThreatLevel::Critical, ThreatLevel::Medium, Quantum, Quantum),
        // The message can raise the effective level above the configured one...
        (ThreatLevel::Low, ThreatLevel::Critical, Quantum, Quantum),
        (ThreatLevel::Medium, ThreatLevel::High, Hybrid, Hybrid),
        // ...but never lower it.
        (ThreatLevel::High, ThreatLevel::Medium, Hybrid, Hybrid),
        (ThreatLevel::Critical, ThreatLevel::High, Quantum, Quantum),
    ] {
        let cfg = AdaptiveCryptoConfig {
            threat_level: cfg_threat,
            ..AdaptiveCryptoConfig::default()
        };
        let calm = MessageContext {
            threat_level: msg_threat,
            ..calm()
        };
        let constrained = MessageContext {
            threat_level: msg_threat,
            ..constrained()
        };
        assert_eq!(
            cfg.select_mode(&calm),
            want_calm,
            "config {cfg_threat:?}, message {msg_threat:?}, calm"
        );
        assert_eq!(
            cfg.select_mode(&constrained),
            want_constrained,
            "config {cfg_threat:?}, message {msg_threat:?}, constrained"
        );
    }
}

#[test]
fn data_sensitivity_setting_moves_rule_4() {
    // (sensitivity, data class, expected under constraints)
    let table = [
        (DataClass::Confidential, DataClass::Internal, Classical),
        (DataClass::Confidential, DataClass::Confidential, Hybrid),
        (DataClass::Confidential, DataClass::Classified, Hybrid),
        (DataClass::Confidential, DataClass::TopSecret, Quantum),
        (DataClass::Classified, DataClass::Confidential, Classical),
        (DataClass::Classified, DataClass::Classified, Hybrid),
        (DataClass::Public, DataClass::Public, Hybrid),
        // Sensitivity TopSecret: rule 1 already makes top secret quantum; classified now follows
        // the network rules.
        (DataClass::TopSecret, DataClass::Classified, Classical),
        (DataClass::TopSecret, DataClass::TopSecret, Quantum),
    ];
    for (sensitivity, class, want) in table {
        let cfg = AdaptiveCryptoConfig {
            data_sensitivity: sensitivity,
            ..AdaptiveCryptoConfig::default()
        };
        let ctx = MessageContext {
            data_class: class,
            ..constrained()
        };
        assert_eq!(
            cfg.select_mode(&ctx),
            want,
            "sensitivity {sensitivity:?}, data {class:?}"
        );
    }
}

#[test]
fn full_grid_matches_rule_table() {
    // An independent restatement of the table, checked over every threat x class x
    // (configured threat) x constrained/calm combination.
    let cfg_default = AdaptiveCryptoConfig::default();
    for cfg_threat in THREATS {
        let cfg = AdaptiveCryptoConfig {
            threat_level: cfg_threat,
            ..cfg_default
        };
        for threat in THREATS {
            for class in CLASSES {
                for (base, net_mode) in [(calm(), Hybrid), (constrained(), Classical)] {
                    let ctx = MessageContext {
                        threat_level: threat,
                        data_class: class,
                        ..base
                    };
                    let eff = cfg_threat.max(threat);
                    let want = if class == DataClass::TopSecret || eff == ThreatLevel::Critical {
                        Quantum
                    } else if eff >= ThreatLevel::High || class >= DataClass::Classified {
                        Hybrid
                    } else {
                        net_mode
                    };
                    assert_eq!(cfg.select_mode(&ctx), want, "{cfg_threat:?} {ctx:?}");
                }
            }
        }
    }
}

#[test]
fn nan_measurements_never_lower_the_mode() {
    let cfg = AdaptiveCryptoConfig::default();
    // On an otherwise calm context, NaN cpu and/or battery change nothing.
    for (cpu, bat) in [(f32::NAN, 100.0), (10.0, f32::NAN), (f32::NAN, f32::NAN)] {
        let ctx = MessageContext {
            cpu_usage_percent: cpu,
            battery_level_percent: bat,
            ..calm()
        };
        assert_eq!(cfg.select_mode(&ctx), Hybrid, "cpu {cpu}, battery {bat}");
    }
    // Across every security combination, a NaN measurement gives exactly what a harmless
    // measurement gives, never less; other constraints still apply.
    for threat in THREATS {
        for class in CLASSES {
            for bandwidth in [10, 100_000] {
                let neutral = MessageContext {
                    threat_level: threat,
                    data_class: class,
                    bandwidth_kbps: bandwidth,
                    ..calm()
                };
                let nan = MessageContext {
                    cpu_usage_percent: f32::NAN,
                    battery_level_percent: f32::NAN,
                    ..neutral
                };
                let want = cfg.select_mode(&neutral);
                assert_eq!(cfg.select_mode(&nan), want, "{nan:?}");
            }
        }
    }
    let nan_but_slow = MessageContext {
        cpu_usage_percent: f32::NAN,
        battery_level_percent: f32::NAN,
        bandwidth_kbps: 999,
        ..calm()
    };
    assert_eq!(cfg.select_mode(&nan_but_slow), Classical);
}

#[test]
fn floors_raise_but_never_lower() {
    let cfg = AdaptiveCryptoConfig::default();
    let picks = [
        (constrained(), Classical),
        (calm(), Hybrid),
        (
            MessageContext {
                data_class: DataClass::TopSecret,
                ..constrained()
            },
            Quantum,
        ),
    ];
    for (ctx, pick) in picks {
        assert_eq!(cfg.select_mode(&ctx), pick);
        for floor in CryptoMode::ALL {
            let got = cfg.select_mode_with_floor(&ctx, floor);
            assert_eq!(got, pick.max(floor), "pick {pick}, floor {floor}");
            assert!(got >= floor);
            assert!(got >= pick);
        }
    }
    // Spelled out: quantum stays quantum under a classical floor; classical becomes quantum.
    let ts = MessageContext {
        data_class: DataClass::TopSecret,
        ..calm()
    };
    assert_eq!(cfg.select_mode_with_floor(&ts, Classical), Quantum);
    assert_eq!(cfg.select_mode_with_floor(&constrained(), Quantum), Quantum);
    assert_eq!(cfg.select_mode_with_floor(&constrained(), Hybrid), Hybrid);
}

/// Every subset of the three modes, as a slice-able vector.
fn subsets() -> Vec<Vec<CryptoMode>> {
    (0u8..8)
        .map(|bits| {
            CryptoMode::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, m)| *m)
                .collect()
        })
        .collect()
}

#[test]
fn select_within_picks_weakest_available_at_or_above_wanted() {
    let cfg = AdaptiveCryptoConfig::default();
    let contexts = [
        (constrained(), Classical),
        (calm(), Hybrid),
        (
            MessageContext {
                threat_level: ThreatLevel::Critical,
                ..calm()
            },
            Quantum,
        ),
    ];
    for (ctx, pick) in contexts {
        for floor in CryptoMode::ALL {
            let want = pick.max(floor);
            for avail in subsets() {
                let expected = avail
                    .iter()
                    .copied()
                    .filter(|m| *m >= want)
                    .min()
                    .ok_or(CryptoError::NoCommonMode);
                let got = cfg.select_mode_within(&ctx, floor, &avail);
                assert_eq!(
                    got, expected,
                    "pick {pick}, floor {floor}, available {avail:?}"
                );
                if let Ok(m) = got {
                    assert!(avail.contains(&m));
                    assert!(m >= want, "never below the wanted mode");
                }
            }
        }
    }
}

#[test]
fn select_within_spelled_out() {
    let cfg = AdaptiveCryptoConfig::default();
    let slow = constrained();
    let ts = MessageContext {
        data_class: DataClass::TopSecret,
        ..calm()
    };
    // Classical wanted, only stronger modes shared: the weakest of them.
    assert_eq!(
        cfg.select_mode_within(&slow, Classical, &[Quantum, Hybrid]),
        Ok(Hybrid)
    );
    // Order and duplicates in `available` do not matter.
    assert_eq!(
        cfg.select_mode_within(&slow, Classical, &[Quantum, Classical, Hybrid, Classical]),
        Ok(Classical)
    );
    // A floor raises past the pick.
    assert_eq!(
        cfg.select_mode_within(&slow, Hybrid, &CryptoMode::ALL),
        Ok(Hybrid)
    );
    // Quantum wanted, only weaker modes shared: no downgrade.
    assert_eq!(
        cfg.select_mode_within(&ts, Classical, &[Classical, Hybrid]),
        Err(CryptoError::NoCommonMode)
    );
    assert_eq!(
        cfg.select_mode_within(&slow, Quantum, &[Classical, Hybrid]),
        Err(CryptoError::NoCommonMode)
    );
    // Nothing shared at all.
    assert_eq!(
        cfg.select_mode_within(&slow, Classical, &[]),
        Err(CryptoError::NoCommonMode)
    );
}

#[test]
fn serde_partial_config_fills_defaults() {
    let d = AdaptiveCryptoConfig::default();

    let empty: AdaptiveCryptoConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, d);

    let one: AdaptiveCryptoConfig =
        serde_json::from_str(r#"{ "low_bandwidth_threshold": 500 }"#).unwrap();
    assert_eq!(
        one,
        AdaptiveCryptoConfig {
            low_bandwidth_threshold: 500,
            ..d
        }
    );

    let some: AdaptiveCryptoConfig = serde_json::from_str(
        r#"{ "threat_level": "critical", "data_sensitivity": "top_secret", "battery_level_threshold": 5.5 }"#,
    )
    .unwrap();
    assert_eq!(
        some,
        AdaptiveCryptoConfig {
            threat_level: ThreatLevel::Critical,
            data_sensitivity: DataClass::TopSecret,
            battery_level_threshold: 5.5,
            ..d
        }
    );
    // The deserialized policy is the one applied.
    assert_eq!(some.select_mode(&constrained()), Quantum);

    let conf: AdaptiveCryptoConfig =
        serde_json::from_str(r#"{ "data_sensitivity": "confidential" }"#).unwrap();
    let ctx = MessageContext {
        data_class: DataClass::Confidential,
        ..constrained()
    };
    assert_eq!(conf.select_mode(&ctx), Hybrid);
}

#[test]
fn serde_round_trips_and_uses_snake_case() {
    let cfg = AdaptiveCryptoConfig {
        low_bandwidth_threshold: 123,
        high_latency_threshold: 456,
        threat_level: ThreatLevel::High,
        data_sensitivity: DataClass::TopSecret,
        cpu_usage_threshold: 66.5,
        battery_level_threshold: 12.25,
    };
    let json = serde_json::to_value(cfg).unwrap();
    assert_eq!(json["threat_level"], "high");
    assert_eq!(json["data_sensitivity"], "top_secret");
    assert_eq!(json["low_bandwidth_threshold"], 123);
    let back: AdaptiveCryptoConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, cfg);

    let ctx: MessageContext = serde_json::from_str(
        r#"{ "bandwidth_kbps": 999, "latency_ms": 10, "threat_level": "low",
             "data_class": "confidential", "cpu_usage_percent": 1.0,
             "battery_level_percent": 90.0 }"#,
    )
    .unwrap();
    assert_eq!(ctx.data_class, DataClass::Confidential);
    assert_eq!(AdaptiveCryptoConfig::default().select_mode(&ctx), Classical);
    let again: MessageContext =
        serde_json::from_str(&serde_json::to_string(&ctx).unwrap()).unwrap();
    assert_eq!(again, ctx);
}

#[test]
fn serde_rejects_unknown_fields_and_bad_values() {
    for bad in [
        r#"{ "bogus": 1 }"#,
        r#"{ "low_bandwidth_threshold": 500, "lowBandwidthThreshold": 1 }"#,
        r#"{ "threat": "high" }"#,
    ] {
        let err = serde_json::from_str::<AdaptiveCryptoConfig>(bad).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
    }
    for bad in [
        r#"{ "threat_level": "High" }"#,
        r#"{ "threat_level": "extreme" }"#,
        r#"{ "data_sensitivity": "topsecret" }"#,
        r#"{ "low_bandwidth_threshold": -1 }"#,
        r#"{ "low_bandwidth_threshold": "1000" }"#,
        "null",
        r#""hybrid""#,
    ] {
        assert!(
            serde_json::from_str::<AdaptiveCryptoConfig>(bad).is_err(),
            "{bad} must be rejected"
        );
    }
}

fn any_threat() -> impl Strategy<Value = ThreatLevel> {
    prop::sample::select(THREATS.to_vec())
}

fn any_class() -> impl Strategy<Value = DataClass> {
    prop::sample::select(CLASSES.to_vec())
}

fn any_mode() -> impl Strategy<Value = CryptoMode> {
    prop::sample::select(CryptoMode::ALL.to_vec())
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        -10.0f32..110.0,
    ]
}

fn any_ctx() -> impl Strategy<Value = MessageContext> {
    (
        0u32..3_000,
        0u32..600,
        any_threat(),
        any_class(),
        any_f32(),
        any_f32(),
    )
        .prop_map(|(bw, lat, threat, class, cpu, bat)| MessageContext {
            bandwidth_kbps: bw,
            latency_ms: lat,
            threat_level: threat,
            data_class: class,
            cpu_usage_percent: cpu,
            battery_level_percent: bat,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn raising_threat_or_class_never_lowers(
        ctx in any_ctx(), threat in any_threat(), class in any_class(), floor in any_mode()
    ) {
        let cfg = AdaptiveCryptoConfig::default();
        let base = cfg.select_mode(&ctx);
        let raised = MessageContext {
            threat_level: ctx.threat_level.max(threat),
            data_class: ctx.data_class.max(class),
            ..ctx
        };
        prop_assert!(cfg.select_mode(&raised) >= base);
        let with_floor = cfg.select_mode_with_floor(&ctx, floor);
        prop_assert_eq!(with_floor, base.max(floor));
        let nan = MessageContext {
            cpu_usage_percent: f32::NAN,
            battery_level_percent: f32::NAN,
            ..ctx
        };
        prop_assert!(cfg.select_mode(&nan) >= base);
        prop_assert_eq!(
            cfg.select_mode_within(&ctx, floor, &CryptoMode::ALL),
            Ok(with_floor)
        );
    }
}

/// An automatic choice never goes below hybrid, however constrained the measurements (which an
/// attacker on the network can push), yet still rises for the rules and the floors.
#[test]
fn automatic_choices_are_never_below_hybrid() {
    let cfg = AdaptiveCryptoConfig::default();
    let slow = constrained();
    assert_eq!(
        cfg.select_mode(&slow),
        Classical,
        "the rules alone pick classical"
    );
    assert_eq!(
        cfg.select_automatic(&slow, Classical, &CryptoMode::ALL),
        Ok(Hybrid)
    );
    assert_eq!(nano_crypto::AUTOMATIC_FLOOR, Hybrid);
    let ts = MessageContext {
        data_class: DataClass::TopSecret,
        ..slow
    };
    assert_eq!(
        cfg.select_automatic(&ts, Classical, &CryptoMode::ALL),
        Ok(Quantum)
    );
    assert_eq!(
        cfg.select_automatic(&slow, Quantum, &CryptoMode::ALL),
        Ok(Quantum)
    );
    // Only classical shared: no automatic downgrade, an error instead.
    assert_eq!(
        cfg.select_automatic(&slow, Classical, &[Classical]),
        Err(CryptoError::NoCommonMode)
    );
}
