//! Tests of the parent module.

use std::collections::BTreeMap;

use super::*;
use crate::{
    model::{
        aggregate::{Aggregator, Drops, ProcRow, Totals},
        event::{FaultKind, MigrateReason},
        hist::new_histogram,
        schema::{Cause, LineKind, ReasonCounts},
        topology::{Node, Tier, Topology},
    },
    testutil::{comm, timed_fault},
};

fn topology() -> Topology {
    Topology {
        nodes: vec![
            Node {
                id: 0,
                tier: Some(4),
                mem_total_kib: 4 << 20,
                ..Default::default()
            },
            Node {
                id: 1,
                tier: Some(72),
                mem_total_kib: 2 << 20,
                cxl: true,
                ..Default::default()
            },
        ],
        tiers: vec![
            Tier {
                id: 4,
                nodes: vec![0],
            },
            Tier {
                id: 72,
                nodes: vec![1],
            },
        ],
        ..Default::default()
    }
}

fn totals() -> Totals {
    let mut t = Totals {
        events: 1000,
        ..Default::default()
    };
    t.faults.total = 30;
    t.faults.user = 25;
    t.faults.kernel = 5;
    t.faults.by_kind[0] = 20;
    t.faults.by_kind[1] = 10;
    t.migrations.by_reason.insert(
        MigrateReason::NumaMisplaced,
        ReasonCounts {
            batches: 3,
            pages_succeeded: 40,
            pages_failed: 2,
            ..Default::default()
        },
    );
    t.tiers.moves.add(
        Some(72),
        Some(4),
        40,
        MigrateReason::NumaMisplaced,
        Cause::NumaBalancing,
    );
    t.tiers
        .moves
        .add(None, None, 7, MigrateReason::Demotion, Cause::Kswapd);
    for ns in [300, 700, 1_500, 1_500, 90_000] {
        t.tiers
            .latency
            .record(&timed_fault(ns, 0, None, None), Some(72));
    }
    for (pid, name, faults) in [
        (1, "big", 20),
        (2, "small", 3),
        (3, "big", 5),
        (4, "mid", 7),
    ] {
        let mut r = ProcRow {
            comm: comm(name),
            ..Default::default()
        };
        r.faults.total = faults;
        t.processes.insert(pid, r);
    }
    t
}

fn built(t: &Totals, comms: &[String]) -> Vec<Family> {
    let agg = Aggregator::default();
    let w = agg.window(
        LineKind::Summary,
        1.0,
        1.0,
        t,
        &Drops::default(),
        &BTreeMap::new(),
        0,
    );
    build(&Input {
        totals: t,
        window: &w,
        topology: &topology(),
        health: &Health::default(),
        comms,
    })
}

fn family<'a>(f: &'a [Family], name: &str) -> &'a Family {
    f.iter()
        .find(|x| x.exposed_name() == name)
        .unwrap_or_else(|| panic!("{name} is missing"))
}

fn count(s: &Series) -> u64 {
    match s.value {
        Value::Count(n) => n,
        ref v => panic!("not a count: {v:?}"),
    }
}

#[test]
fn ranks_name_the_fastest_and_the_slowest() {
    assert_eq!(tier_rank(&[72, 4], Some(4)), "fast");
    assert_eq!(tier_rank(&[72, 4], Some(72)), "slow");
    assert_eq!(tier_rank(&[4, 22, 72], Some(22)), "mid1");
    assert_eq!(tier_rank(&[4], Some(4)), "fast");
    assert_eq!(tier_rank(&[4], None), "unknown");
    assert_eq!(tier_rank(&[4], Some(9)), "unknown");
}

#[test]
fn counters_are_the_totals() {
    let f = built(&totals(), &[]);
    let faults = family(&f, "cxl_trace_page_faults_total");
    assert_eq!(faults.series.iter().map(count).sum::<u64>(), 30);
    let first = &faults.series[0];
    assert_eq!(
        first.labels,
        vec![("kind", FaultKind::ALL[0].name().to_string())]
    );
    let moved = family(&f, "cxl_trace_migrated_pages_total");
    let got: Vec<(String, u64)> = moved
        .series
        .iter()
        .filter(|s| s.labels[0].1 == "numa_misplaced")
        .map(|s| (s.labels[1].1.clone(), count(s)))
        .collect();
    assert_eq!(got, vec![("succeeded".into(), 40), ("failed".into(), 2)]);
    // Every known reason has its series from 0.
    assert_eq!(moved.series.len(), 20);
    assert_eq!(moved.series.iter().map(count).sum::<u64>(), 42);
    let promoted = family(&f, "cxl_trace_promoted_pages_total");
    assert_eq!(promoted.series.len(), 1);
    let labels: Vec<&str> = promoted.series[0]
        .labels
        .iter()
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        labels,
        ["numa_balancing", "tier72", "tier4", "slow", "fast"]
    );
    assert_eq!(count(&promoted.series[0]), 40);
    let demoted = family(&f, "cxl_trace_demoted_pages_total");
    assert_eq!(count(&demoted.series[0]), 7);
    assert_eq!(demoted.series[0].labels[1].1, "unknown");
    assert_eq!(
        count(&family(&f, "cxl_trace_events_received_total").series[0]),
        1000
    );
    let mem = family(&f, "cxl_trace_tier_memory_bytes");
    assert_eq!(mem.series[1].value, Value::Float((2u64 << 30) as f64));
}

#[test]
fn every_series_has_its_family_labels_and_names_are_unique() {
    let f = built(&totals(), &["big".into()]);
    let mut names: Vec<String> = f.iter().map(Family::exposed_name).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n);
    for fam in &f {
        assert!(fam.exposed_name().starts_with("cxl_trace_") || fam.name.starts_with("process_"));
        for s in &fam.series {
            let keys: Vec<&str> = s.labels.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, fam.labels, "{}", fam.name);
        }
    }
    assert_eq!(catalogue().len(), f.len());
    assert_eq!(built(&totals(), &[]).len() + 3, f.len());
}

#[test]
fn latency_buckets_hold_every_fault_and_the_exact_sum() {
    let f = built(&totals(), &[]);
    let lat = family(&f, "cxl_trace_fault_latency_seconds");
    assert_eq!(lat.series.len(), 1);
    let Value::Hist(h) = &lat.series[0].value else {
        panic!("not a histogram")
    };
    assert_eq!(h.count, 5);
    assert!((h.sum - 94_000e-9).abs() < 1e-12, "{}", h.sum);
    assert_eq!(h.classic.iter().map(|b| b.1).sum::<u64>(), 5);
    assert_eq!(h.native.iter().map(|b| b.1).sum::<u64>(), 5);
    // 300 ns is in (2^-22, 2^-21] s, 1500 ns in (2^-20, 2^-19].
    assert!(h.native.contains(&(-21, 1)), "{:?}", h.native);
    assert!(h.native.contains(&(-19, 2)), "{:?}", h.native);
    // Native and classic agree: the classic bucket with bound 2^i holds native bucket i.
    for (i, n) in &h.native {
        let bound = 2f64.powi(*i);
        let c = h.classic.iter().find(|(b, _)| *b == bound).map(|b| b.1);
        assert_eq!(c, Some(*n), "bucket {i}");
    }
    let labels: Vec<&str> = lat.series[0]
        .labels
        .iter()
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(labels[..2], ["tier72", "slow"]);
}

#[test]
fn native_buckets_encode_as_spans_and_deltas() {
    let (spans, deltas) = spans_and_deltas(&[(-21, 1), (-20, 3), (-17, 2)]);
    assert_eq!(spans, vec![(-21, 2), (2, 1)]);
    assert_eq!(deltas, vec![1, 2, -1]);
    assert_eq!(spans_and_deltas(&[]), (vec![], vec![]));
}

#[test]
fn an_empty_histogram_has_no_buckets() {
    let b = from_hdr(&new_histogram(), None);
    assert_eq!((b.count, b.sum), (0, 0.0));
    assert!(b.native.is_empty());
    assert_eq!(b.classic.len(), classic_bounds().len() + 1);
}

#[test]
fn process_names_are_sticky_and_bounded() {
    let mut t = totals();
    let mut comms = Vec::new();
    comm_labels(&t, &mut comms, 2);
    assert_eq!(comms, ["big", "mid"]);
    // "small" becomes the busiest: the chosen names keep their series.
    t.processes.get_mut(&2).expect("pid 2").faults.total = 1000;
    comm_labels(&t, &mut comms, 2);
    assert_eq!(comms, ["big", "mid"]);
    let f = built(&t, &comms);
    let per = family(&f, "cxl_trace_process_page_faults_total");
    let got: Vec<(String, u64)> = per
        .series
        .iter()
        .map(|s| (s.labels[0].1.clone(), count(s)))
        .collect();
    assert_eq!(got, vec![("big".into(), 25), ("mid".into(), 7)]);
}

#[test]
fn ras_counters_start_at_zero_for_every_severity() {
    let f = built(&totals(), &[]);
    let ras = family(&f, "cxl_trace_ras_events_total");
    let has = |event: &str, sev: &str| {
        ras.series
            .iter()
            .any(|s| s.labels[0].1 == event && s.labels[1].1 == sev && count(s) == 0)
    };
    assert!(has("cxl:cxl_poison", "poison"));
    assert!(has("cxl:cxl_general_media", "fatal"));
    assert!(has("mce:mce_record", "uncorrected"));
    assert!(has("ras:memory_failure_event", "uncorrectable"));
    // Not RAS: no series.
    assert!(!ras
        .series
        .iter()
        .any(|s| s.labels[0].1.starts_with("sched:")));
}

#[test]
fn severities_come_from_the_record() {
    use crate::model::rare::{FieldValue, RareEvent, RARE};
    let ev = |name: &str, fields: &[(&str, u64)]| RareEvent {
        ts_ns: 0,
        spec: *RARE.iter().find(|r| r.name == name).expect(name),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), FieldValue::UInt(*v)))
            .collect(),
    };
    assert_eq!(ev("cxl_general_media", &[("log", 3)]).severity(), "fatal");
    assert_eq!(ev("cxl_dram", &[("log", 0)]).severity(), "informational");
    assert_eq!(ev("cxl_dram", &[]).severity(), "unknown");
    assert_eq!(
        ev("mce_record", &[("status", 1 << 61)]).severity(),
        "uncorrected"
    );
    assert_eq!(ev("mce_record", &[("status", 1)]).severity(), "corrected");
    assert_eq!(ev("cxl_poison", &[]).severity(), "poison");
    assert_eq!(ev("sched_move_numa", &[]).severity(), "none");
    for name in ["cxl_general_media", "mce_record", "cxl_poison"] {
        assert!(!RareEvent::severities(name).is_empty());
    }
}
