//! `export --format perfetto` decoded back (trace_processor cannot be installed on these
//! machines, so the round trip is the check): the trace is well formed and its counts are
//! `report`'s.

mod common;

use std::collections::{HashMap, HashSet};

use perfetto_protos::track_event::track_event::Type;

use common::*;

const TWO_TIER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/two-tier.cxlt"
);
const TIMED_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/v1-timed.cxlt"
);

/// Exports `file` natively; returns the decoded trace and `report --format json`.
fn export(file: &str) -> (perfetto_protos::trace::Trace, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.pftrace");
    let p = path.to_str().expect("utf-8 path");
    let out = cxl_trace(&["export", "--format", "perfetto", file, "-o", p]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = cxl_trace(&["export", "--format", "perfetto", file, "-o", p]);
    assert_eq!(again.status.code(), Some(2), "an existing output is kept");
    let trace = decode_perfetto(&std::fs::read(&path).expect("written"));
    let report = cxl_trace(&["report", "--format", "json", file]);
    (
        trace,
        serde_json::from_slice(&report.stdout).expect("report json"),
    )
}

/// Instants and slice begins by name (an event is one or the other, never both).
fn by_name(t: &perfetto_protos::trace::Trace) -> HashMap<String, u64> {
    let mut n = HashMap::new();
    for (_, e) in track_events(t) {
        if matches!(e.type_(), Type::TYPE_INSTANT | Type::TYPE_SLICE_BEGIN) {
            *n.entry(e.name().to_string()).or_default() += 1;
        }
    }
    n
}

fn timed_faults(report: &serde_json::Value) -> u64 {
    report["fault_latency"]["by_tier"]
        .as_object()
        .map(|tiers| tiers.values().map(|t| u(&t["all"]["count"])).sum())
        .unwrap_or(0)
}

#[test]
fn a_two_tier_recording_round_trips_with_reports_counts() {
    let (t, report) = export(TWO_TIER);
    let names = by_name(&t);
    let get = |k: &str| names.get(k).copied().unwrap_or(0);
    assert_eq!(
        get("fault user") + get("fault kernel"),
        u(&report["faults"]["total"]),
        "one instant per fault"
    );
    assert_eq!(
        get("fault kernel"),
        u(&report["faults"]["kernel"]),
        "{names:?}"
    );
    assert!(
        timed_faults(&report) > 10_000,
        "the fixture has timed faults"
    );
    assert_eq!(
        get("fault (timed)"),
        timed_faults(&report),
        "every timed fault"
    );
    let batches: u64 = names
        .iter()
        .filter(|(k, _)| k.starts_with("migrate "))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(batches, u(&report["migrations"]["batches"]), "every batch");
    assert_eq!(
        get("numa hint fault"),
        u(&report["numa_hint_faults"]["total"]),
        "every hint fault"
    );
    // Timed faults and batches are slices on thread tracks: most of them (a thread does one
    // at a time; only an overlapping one falls back to an instant).
    let slices = track_events(&t)
        .iter()
        .filter(|(_, e)| e.type_() == Type::TYPE_SLICE_BEGIN)
        .count() as u64;
    assert!(
        slices * 10 >= (timed_faults(&report) + batches) * 9,
        "{slices} slices"
    );
    // A process track for each of report's top processes, named by its (hashed) comm.
    let procs: HashMap<i32, String> = t
        .packet
        .iter()
        .filter(|p| p.has_track_descriptor() && p.track_descriptor().process.is_some())
        .map(|p| {
            let d = &p.track_descriptor().process;
            (d.pid(), d.process_name().to_string())
        })
        .collect();
    for p in report["processes"].as_array().expect("processes") {
        let pid = i32::try_from(u(&p["pid"])).expect("pid");
        assert_eq!(
            procs.get(&pid).map(String::as_str),
            p["comm"].as_str(),
            "{pid}"
        );
    }
    // Counter tracks: one value per recorded interval, the fault rate adding up.
    let counter_tracks: HashSet<u64> = t
        .packet
        .iter()
        .filter(|p| p.has_track_descriptor() && p.track_descriptor().counter.is_some())
        .map(|p| p.track_descriptor().uuid())
        .collect();
    assert_eq!(counter_tracks.len(), 8);
    let faults_track = t
        .packet
        .iter()
        .filter(|p| p.has_track_descriptor())
        .find(|p| p.track_descriptor().name() == "faults/s")
        .map(|p| p.track_descriptor().uuid())
        .expect("faults/s track");
    let rates: Vec<f64> = track_events(&t)
        .iter()
        .filter(|(_, e)| e.track_uuid() == faults_track)
        .map(|(_, e)| e.double_counter_value())
        .collect();
    assert!(rates.len() >= 8, "{} intervals", rates.len());
    let total = u(&report["faults"]["total"]) as f64;
    let counted: f64 = rates.iter().sum();
    assert!(
        counted > 0.8 * total && counted < 1.2 * total,
        "{counted} vs {total} (about 1 s intervals)"
    );
}

#[test]
fn cpu_tracks_are_named_and_the_recording_described() {
    let (t, report) = export(TIMED_V1);
    let names = by_name(&t);
    assert_eq!(
        names.get("fault user").copied().unwrap_or(0)
            + names.get("fault kernel").copied().unwrap_or(0),
        u(&report["faults"]["total"])
    );
    let cpus: Vec<String> = t
        .packet
        .iter()
        .filter(|p| p.has_track_descriptor())
        .map(|p| p.track_descriptor().name().to_string())
        .filter(|n| n.starts_with("CPU "))
        .collect();
    assert!(!cpus.is_empty(), "CPU tracks");
    let end = track_events(&t)
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e.name() == "recording end")
        .expect("the recording's end");
    let kernel = end
        .debug_annotations
        .iter()
        .find(|a| a.name() == "kernel")
        .map(|a| a.string_value().to_string());
    assert_eq!(kernel.as_deref(), report["host"]["kernel"].as_str());
}
