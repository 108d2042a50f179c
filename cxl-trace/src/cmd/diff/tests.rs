//! `diff` on synthetic profiles with known shifts, the `--fail-on` grammar, and text/JSON/SVG.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng as _, SeedableRng as _};

use super::*;
use crate::model::diff::compare::*;
use crate::{model::hist::new_histogram, model::recording::Header, model::topology::Tier};

fn latencies(seed: u64, n: usize, median: f64) -> Histogram<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut h = new_histogram();
    for _ in 0..n {
        let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
        let _ = h.record((median * (0.5 * z).exp()).max(1.0) as u64);
    }
    h
}

/// A two-tier run of `secs` one-second intervals: `promo` pages promoted per second (+-10%),
/// fault latency on the slow tier around `slow_ns`.
fn profile(seed: u64, secs: usize, promo: f64, slow_ns: f64, rate_limit: u64) -> Profile {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut header = Header {
        kernel: "6.18.0".into(),
        ..Header::default()
    };
    header.topology.tiers = vec![
        Tier {
            id: 4,
            nodes: vec![0],
        },
        Tier {
            id: 22,
            nodes: vec![1],
        },
    ];
    header.topology.settings.numa_balancing = Some(2);
    header.topology.settings.promote_rate_limit_mbps = Some(rate_limit);
    let labels = profile::tier_labels(&header.topology);
    let mut series = BTreeMap::new();
    let jitter = |rng: &mut SmallRng, x: f64| (x * (0.9 + 0.2 * rng.random::<f64>())).round();
    series.insert(
        "promotions".to_string(),
        (0..secs).map(|_| jitter(&mut rng, promo)).collect(),
    );
    series.insert(
        "faults".to_string(),
        (0..secs).map(|_| jitter(&mut rng, 50_000.0)).collect(),
    );
    let mut latency = BTreeMap::new();
    latency.insert(
        ("slow".to_string(), "all".to_string()),
        latencies(seed, 40_000, slow_ns),
    );
    latency.insert(
        ("fast".to_string(), "all".to_string()),
        latencies(seed + 1, 40_000, 900.0),
    );
    Profile {
        path: format!("run{seed}.cxlt"),
        header,
        summary: summary(),
        labels,
        latency,
        residency: new_histogram(),
        dt: vec![1.0; secs],
        t: (1..=secs).map(|t| t as f64).collect(),
        series,
        drops: 0,
    }
}

/// A whole-run summary of one event, nothing dropped, fault latency measured.
fn summary() -> crate::model::schema::Window {
    let totals = crate::model::aggregate::Aggregator::new().end_interval();
    let mut w = crate::model::aggregate::window(
        crate::model::schema::LineKind::Report,
        1.0,
        1.0,
        &totals,
        &Default::default(),
        &Default::default(),
        0,
    );
    w.recording = Some(crate::model::schema::RecordingInfo {
        events: 1,
        format_version: 1,
        ..Default::default()
    });
    w
}

fn row<'a>(d: &'a Diff, id: &str) -> &'a Row {
    d.rows
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no row {id}"))
}

#[test]
fn identical_runs_change_nothing() {
    let a = profile(1, 20, 500.0, 3000.0, 65536);
    let d = compare(&a, &a, 5.0);
    assert!(d.config.is_empty(), "{:?}", d.config);
    assert!(!d.rows.is_empty());
    for r in &d.rows {
        assert!(!r.change.significant, "{r:?}");
        assert_eq!(r.change.pct, 0.0, "{}", r.id);
    }
    let text = to_text(&a, &a, &d, &[]);
    let table: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(":tier=") || l.starts_with("  promotions"))
        .collect();
    assert!(!table.is_empty());
    assert!(table.iter().all(|l| l.ends_with("no change")), "{text}");
    assert!(text.contains("Configuration: the same"));
}

#[test]
fn noise_between_two_runs_of_the_same_thing_is_not_flagged() {
    let a = profile(1, 20, 500.0, 3000.0, 65536);
    let b = profile(2, 25, 500.0, 3000.0, 65536);
    let d = compare(&a, &b, 5.0);
    let flagged: Vec<&str> = d
        .rows
        .iter()
        .filter(|r| r.change.significant)
        .map(|r| r.id.as_str())
        .collect();
    assert!(flagged.is_empty(), "{flagged:?}");
}

#[test]
fn a_throttled_run_is_flagged_config_first_and_fails_the_bisect() {
    let base = profile(1, 20, 500.0, 3000.0, 65536);
    let new = profile(2, 20, 60.0, 3600.0, 4);
    let d = compare(&base, &new, 5.0);
    assert_eq!(d.config[0].what, "numa_balancing_promote_rate_limit_MBps");
    assert_eq!(
        (d.config[0].base.as_str(), d.config[0].new.as_str()),
        ("65536", "4")
    );
    let p = row(&d, "promotions");
    assert!(p.change.significant && p.change.pct < -80.0, "{p:?}");
    let slow = row(&d, "p99:tier=slow:class=all");
    assert!(
        slow.change.significant && (slow.change.pct - 20.0).abs() < 6.0,
        "{slow:?}"
    );
    let fast = row(&d, "p99:tier=fast:class=all");
    assert!(!fast.change.significant, "{fast:?}");

    let conds: Vec<FailOn> = [
        "promotions:-20%",
        "p99:tier=slow:+10%",
        "p99:tier=fast:+10%",
        "pingpong:+50%",
    ]
    .iter()
    .map(|s| parse_fail_on(s).expect("valid"))
    .collect();
    let v = evaluate(&d, &conds).expect("all measurable");
    let crossed: Vec<(&str, usize)> = v.iter().map(|(s, r)| (s.as_str(), r.len())).collect();
    assert_eq!(
        crossed,
        [
            ("promotions:-20%", 1),
            ("p99:tier=slow:+10%", 1),
            ("p99:tier=fast:+10%", 0),
            ("pingpong:+50%", 0)
        ]
    );
    // A threshold beyond the change is not crossed; the wrong direction is not either.
    let v = evaluate(&d, &[parse_fail_on("promotions:-95%").expect("valid")]).expect("ok");
    assert!(v[0].1.is_empty());
    let v = evaluate(&d, &[parse_fail_on("promotions:+20%").expect("valid")]).expect("ok");
    assert!(v[0].1.is_empty());
    // Without a tier, a latency condition watches every tier.
    let v = evaluate(&d, &[parse_fail_on("p99:+10%").expect("valid")]).expect("ok");
    assert_eq!(v[0].1.len(), 1);

    let j = serde_json::to_value(to_doc(&base, &new, &d, &v)).expect("serialises");
    assert_eq!(
        j["config_differences"][0]["what"],
        "numa_balancing_promote_rate_limit_MBps"
    );
    let promo = j["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == "promotions")
        .expect("promotions row");
    assert_eq!(promo["significant"], true);
    assert!(promo["change_pct"].as_f64().is_some_and(|p| p < -80.0));
    assert_eq!(j["fail_on"][0]["crossed"], true);

    let svg = svg::render(&base, &new).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("fault latency CDF, tier slow"));
    assert!(svg.contains("tier churn") && svg.contains("promotions new"));
    assert!(
        svg.matches("<polyline").count() >= 6,
        "2 CDFs x 2 tiers + churn + faults lines"
    );
}

#[test]
fn fail_on_grammar() {
    let f = parse_fail_on("p99:tier=slow:+10%").expect("valid");
    assert_eq!((f.metric.as_str(), f.pct), ("p99", 10.0));
    assert_eq!(f.quals, [("tier".to_string(), "slow".to_string())]);
    let f = parse_fail_on("promotions:-20%").expect("valid");
    assert_eq!(
        (f.metric.as_str(), f.pct, f.quals.len()),
        ("promotions", -20.0, 0)
    );
    let f = parse_fail_on("p99.9:tier=fast:class=minor:+2.5%").expect("valid");
    assert_eq!(f.pct, 2.5);
    assert!(parse_fail_on("migrated:reason=compaction:+30%").is_ok());
    for (bad, why) in [
        ("", "empty"),
        ("promotions", "METRIC"),
        ("p98:+10%", "unknown metric"),
        ("promotions:20%", "sign"),
        ("promotions:+20", "ends in %"),
        ("promotions:+x%", "not a number"),
        ("promotions:+0%", "non-zero"),
        ("p99:slow:+10%", "KEY=VALUE"),
        ("p99:node=1:+10%", "unknown qualifier"),
    ] {
        let e = parse_fail_on(bad).expect_err(bad);
        assert!(e.contains(why) && e.contains("--fail-on"), "{bad}: {e}");
    }
}

#[test]
fn a_condition_on_nothing_measured_is_an_error() {
    let mut a = profile(1, 10, 500.0, 3000.0, 65536);
    a.latency.clear();
    let d = compare(&a, &a, 5.0);
    let e = evaluate(&d, &[parse_fail_on("p99:tier=slow:+10%").expect("valid")])
        .expect_err("no latency rows");
    assert!(e.to_string().contains("no such measurement"), "{e}");
}
