use std::collections::{HashMap, HashSet};

use perfetto_protos::{trace::Trace, track_event::track_event::Type};
use protobuf::Message;

use super::*;
use crate::{
    model::{
        event::{MigrateBatch, MigrateReason, MigrateStart},
        recording::Header,
        tiers::TierMap,
    },
    output::export::export_row,
    testutil::{comm, timed_fault},
};

fn header() -> Header {
    Header {
        tool_version: "test".into(),
        kernel: "6.18.0".into(),
        hostname: "box".into(),
        start_monotonic_ns: 1_000_000_000,
        ..Header::default()
    }
}

/// Writes `events` and one interval's counters; returns the decoded trace.
fn written(events: &[Event]) -> Trace {
    let h = header();
    let tiers = TierMap::from_topology(&h.topology);
    let mut w = PerfettoWriter::new(Vec::new(), &h).expect("start");
    for e in events {
        w.write_event(e, &export_row(e, &h, &tiers)).expect("event");
    }
    w.counters(0.0, 1.0, &Totals::default(), 3)
        .expect("counters");
    let info = TraceInfo {
        tool: "cxl-trace",
        tool_version: "test",
        kernel: "6.18.0",
        hostname: "box",
        scope: "system",
        recording: "x.cxlt".into(),
        truncated: false,
    };
    let bytes = w.finish(&info).expect("finish");
    Trace::parse_from_bytes(&bytes).expect("a Trace")
}

/// Per track: slices begun and ended.
type Slices = HashMap<u64, (u32, u32)>;
/// Named events: (name, track, time).
type Named = Vec<(String, u64, u64)>;

/// Checks every track is declared before use; returns the slices and the named events.
fn check_tracks(t: &Trace) -> (Slices, Named) {
    let mut declared = HashSet::new();
    let mut slices: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut named = Vec::new();
    for p in &t.packet {
        assert_eq!(p.trusted_packet_sequence_id(), SEQUENCE_ID);
        if p.has_track_descriptor() {
            declared.insert(p.track_descriptor().uuid());
        }
        if p.has_track_event() {
            let e = p.track_event();
            assert!(
                declared.contains(&e.track_uuid()),
                "track {:#x} used before it is declared",
                e.track_uuid()
            );
            let s = slices.entry(e.track_uuid()).or_default();
            match e.type_() {
                Type::TYPE_SLICE_BEGIN => s.0 += 1,
                Type::TYPE_SLICE_END => s.1 += 1,
                _ => {}
            }
            if e.has_name() {
                named.push((e.name().to_string(), e.track_uuid(), p.timestamp()));
            }
        }
    }
    (slices, named)
}

fn batch(ts_ns: u64, tid: u32) -> (Event, Event) {
    let start = MigrateStart {
        ts_ns,
        pid: tid,
        tid,
        cpu: 1,
        comm: comm("kswapd0"),
        mode: 0,
        reason: MigrateReason::Demotion,
    };
    let end = MigrateBatch {
        ts_ns: ts_ns + 5_000,
        pid: tid,
        tid,
        cpu: 1,
        comm: comm("kswapd0"),
        succeeded: 32,
        failed: 0,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 0,
        reason: MigrateReason::Demotion,
    };
    (Event::MigrateStart(start), Event::Migrate(end))
}

#[test]
fn timed_faults_and_batches_are_slices_on_their_threads() {
    let mut f = timed_fault(2_000, 0, None, None);
    f.ts_ns = 1_000_010_000;
    f.pid = 7;
    f.tid = 8;
    f.comm = comm("worker");
    let (s, e) = batch(1_000_020_000, 40);
    let t = written(&[Event::FaultLatency(f), s, e]);
    let (slices, named) = check_tracks(&t);
    assert_eq!(slices.get(&uuid::thread(8)), Some(&(1, 1)), "{slices:?}");
    assert_eq!(slices.get(&uuid::thread(40)), Some(&(1, 1)), "{slices:?}");
    let fault = named
        .iter()
        .find(|n| n.0 == "fault (timed)")
        .expect("fault");
    assert_eq!(
        (fault.1, fault.2),
        (uuid::thread(8), 1_000_008_000),
        "begins at ts - latency"
    );
    let mig = named
        .iter()
        .find(|n| n.0.starts_with("migrate"))
        .expect("batch");
    assert_eq!(mig.2, 1_000_020_000, "begins at the batch's start");
    // The process is named by its comm.
    let procs: Vec<String> = t
        .packet
        .iter()
        .filter(|p| p.has_track_descriptor() && p.track_descriptor().process.is_some())
        .map(|p| p.track_descriptor().process.process_name().to_string())
        .collect();
    assert!(procs.contains(&"worker".to_string()), "{procs:?}");
}

#[test]
fn a_slice_that_would_overlap_its_thread_becomes_an_instant() {
    let mut a = timed_fault(10_000, 0, None, None);
    a.ts_ns = 1_000_100_000;
    let mut b = timed_fault(10_000, 0, None, None);
    // Begins before `a` ends: a lost end, or clocks of two CPUs.
    b.ts_ns = 1_000_105_000;
    b.cpu = 1;
    let t = written(&[Event::FaultLatency(a), Event::FaultLatency(b)]);
    let (slices, named) = check_tracks(&t);
    assert_eq!(slices.get(&uuid::thread(1)), Some(&(1, 1)), "{slices:?}");
    let on_cpu: Vec<_> = named
        .iter()
        .filter(|n| n.0 == "fault (timed)" && n.1 == uuid::cpu(1))
        .collect();
    assert_eq!(on_cpu.len(), 1, "{named:?}");
    assert_eq!(on_cpu[0].2, 1_000_105_000, "at its end");
}

#[test]
fn counters_once_per_interval_and_the_recording_named() {
    let t = written(&[]);
    let counters: Vec<f64> = t
        .packet
        .iter()
        .filter(|p| p.has_track_event() && p.track_event().type_() == Type::TYPE_COUNTER)
        .map(|p| p.track_event().double_counter_value())
        .collect();
    assert_eq!(counters.len(), COUNTERS.len());
    assert_eq!(counters.last(), Some(&3.0), "drops");
    let end = t
        .packet
        .iter()
        .filter(|p| p.has_track_event())
        .map(|p| p.track_event())
        .find(|e| e.name() == "recording end")
        .expect("end");
    let kernel = end
        .debug_annotations
        .iter()
        .find(|a| a.name() == "kernel")
        .map(|a| a.string_value().to_string());
    assert_eq!(kernel.as_deref(), Some("6.18.0"));
}
