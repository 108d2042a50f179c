//! The blast radius of a memory error, as a recording carries it: `report` (text and JSON),
//! `replay`, `redact` and the Perfetto export all show the same incident, read from a real
//! file written and read back.

mod common;

use std::{fs, path::Path};

use common::{cxl_trace, decode_perfetto, json_lines, of_type, stderr, track_events};
use cxl_trace::model::{
    recording::{Chunk, ChunkKind, Reader, Writer},
    schema::{BlastRadius, BlastScope, Fate, Holder, Window},
};

const GOLDEN_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/v1-small.cxlt"
);

fn incident(start_ns: u64) -> BlastRadius {
    let holder = |pid, comm: &str, cgroup: &str, pages, fate, after| Holder {
        pid,
        comm: comm.into(),
        cgroup: cgroup.into(),
        pages,
        page_cgroup: cgroup == "/victim.slice/job",
        fate,
        pages_after: after,
    };
    BlastRadius {
        event: "blast_radius".into(),
        cause: "ras:memory_failure_event".into(),
        ts_ns: start_ns + 1_250_000_000,
        events: 1,
        scope: BlastScope {
            node: Some(1),
            tier: Some(22),
            pfn: Some(0x399123),
            page_cgroup: Some("/victim.slice/job".into()),
        },
        sampled_after_ms: 3.5,
        settled_after_ms: 2004.0,
        moved_before_sample: 0,
        holders: vec![
            holder(
                4242,
                "victim",
                "/victim.slice/job",
                4096,
                Fate::Killed,
                None,
            ),
            holder(
                4343,
                "bystander",
                "/other",
                512,
                Fate::Unaffected,
                Some(512),
            ),
        ],
        holders_left_out: 0,
        cgroups: [
            ("/victim.slice/job".to_string(), 4096),
            ("/other".to_string(), 512),
        ]
        .into(),
        unreadable: 0,
        method: "test".into(),
    }
}

/// The golden recording again, with `b` in its second snapshot; returns the file.
fn with_incident(dir: &Path, b: &BlastRadius) -> String {
    let input = fs::File::open(GOLDEN_V1).expect("golden recording");
    let mut r = Reader::new(std::io::BufReader::new(input)).expect("readable");
    let header = r.header.clone();
    let path = dir.join("blast.cxlt");
    let out = fs::File::create(&path).expect("create");
    let mut w = Writer::new(out, &header).expect("header");
    let mut snapshots = 0;
    while let Some(c) = r.next_chunk().expect("chunk") {
        match c {
            Chunk::Events(recs) => {
                for rec in &recs {
                    w.event(rec).expect("event");
                }
            }
            Chunk::Snapshot(mut s) => {
                snapshots += 1;
                if snapshots == 2 {
                    s.blast.push(b.clone());
                }
                w.json(ChunkKind::Snapshot, 0, &*s).expect("snapshot");
            }
            Chunk::End(e) => w.json(ChunkKind::End, 0, &e).expect("end"),
        }
    }
    w.finish().expect("finish");
    path.display().to_string()
}

fn blasts(w: &Window) -> Vec<BlastRadius> {
    w.events_log.blasts().cloned().collect()
}

fn report(path: &str) -> Window {
    let out = cxl_trace(&["report", "--format", "json", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

#[test]
fn a_recorded_blast_radius_reads_back_everywhere() {
    let dir = std::env::temp_dir().join(format!("cxlt-blast-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let start = report(GOLDEN_V1)
        .recording
        .map(|r| r.start_monotonic_ns)
        .expect("recording facts");
    let b = incident(start);
    let path = with_incident(&dir, &b);

    // report JSON: valid against the published schema; the incident, whole; every other
    // number as before.
    let out = cxl_trace(&["schema", "report"]);
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let out = cxl_trace(&["report", "--format", "json", &path]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let (plain, golden) = (report(&path), report(GOLDEN_V1));
    assert_eq!(blasts(&plain), vec![b.clone()]);
    assert_eq!(plain.faults, golden.faults);
    assert_eq!(plain.migrations, golden.migrations);

    // report text: time since the start, scope, each holder with its fate, cgroup totals.
    let out = cxl_trace(&["report", &path]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "+1.250 s  blast radius of ras:memory_failure_event (1 event): node 1 tier 22, pfn 0x399123, page charged to /victim.slice/job",
        "victim[4242] 4096 pages (the page's cgroup) in /victim.slice/job -> killed (SIGBUS)",
        "bystander[4343] 512 pages in /other -> unaffected",
        "cgroup /victim.slice/job: 4096 pages",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    // replay: in exactly one interval line, as the live run printed it.
    let out = cxl_trace(&["replay", "--no-tui", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let with: Vec<_> = of_type(&lines, "interval")
        .into_iter()
        .filter(|l| l.to_string().contains("blast_radius"))
        .collect();
    assert_eq!(with.len(), 1, "one interval carries it");
    let w: Window = serde_json::from_value(with[0].clone()).expect("typed interval");
    assert_eq!(blasts(&w), vec![b.clone()]);

    // Chrome JSON: one global instant at the event's time, holders as arguments.
    let trace = dir.join("blast.json");
    let out = cxl_trace(&[
        "export",
        "--format",
        "chrome-json",
        &path,
        "-o",
        trace.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(&trace).expect("trace")).expect("JSON");
    let instants: Vec<&serde_json::Value> = v["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["name"] == "blast radius of ras:memory_failure_event")
        .collect();
    assert_eq!(instants.len(), 1);
    assert_eq!(instants[0]["s"], "g");
    assert_eq!(instants[0]["ts"].as_f64(), Some(1_250_000.0));
    assert_eq!(instants[0]["args"]["holders"][0]["fate"], "killed");
    // Native Perfetto: an instant on the RAS track, holders as an annotation.
    let native = dir.join("blast.pftrace");
    let n = native.to_str().expect("path");
    let out = cxl_trace(&["export", "--format", "perfetto", &path, "-o", n]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = decode_perfetto(&fs::read(&native).expect("trace"));
    let events = track_events(&t);
    let found: Vec<_> = events
        .iter()
        .filter(|(_, e)| e.name() == "blast radius of ras:memory_failure_event")
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].0, b.ts_ns,
        "at the event's time, on the kernel's clock"
    );
    let holders = found[0]
        .1
        .debug_annotations
        .iter()
        .find(|a| a.name() == "holders")
        .map(|a| a.string_value().to_string())
        .unwrap_or_default();
    assert!(holders.contains("\"killed\""), "{holders}");

    // redact: names and cgroup components hashed, pids, pages and fates kept.
    let red = dir.join("red.cxlt");
    let out = cxl_trace(&["redact", &path, "-o", red.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rb = blasts(&report(red.to_str().expect("path")));
    let [r] = rb.as_slice() else {
        panic!("one incident after redaction: {rb:?}")
    };
    let json = serde_json::to_string(r).expect("json");
    for secret in ["victim", "bystander", "other", "job"] {
        assert!(!json.contains(secret), "{secret} left in {json}");
    }
    let v = &r.holders[0];
    assert_eq!((v.pid, v.pages, v.fate), (4242, 4096, Fate::Killed));
    assert!(v.comm.starts_with('h') && v.comm.len() == 15, "{}", v.comm);
    assert_eq!(
        v.cgroup.matches('/').count(),
        2,
        "hierarchy kept: {}",
        v.cgroup
    );
    assert_eq!(r.scope.page_cgroup.as_deref(), Some(v.cgroup.as_str()));
    assert_eq!(r.cgroups.get(&v.cgroup), Some(&4096));
    assert_eq!(r.holders[1].fate, Fate::Unaffected);
    let _ = fs::remove_dir_all(&dir);
}
