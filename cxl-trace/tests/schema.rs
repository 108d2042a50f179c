//! Every machine-readable output checked against the published JSON Schema
//! (`cxl-trace schema COMMAND`) with a validator, and read back into the output types:
//! from the golden recordings without privileges, and live as root.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cxl_trace::schema::{self, Document, Line, SCHEMA_VERSION};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings")
        .join(name)
}

/// The schema as the command prints it.
fn printed_schema(doc: Document) -> Value {
    let out = cxl_trace(&["schema", doc.name()]);
    assert_eq!(out.status.code(), Some(0), "schema: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("schema is JSON")
}

/// Validates every instance; the failures name the instance and the path inside it.
fn validate(doc: Document, instances: &[Value]) {
    assert!(!instances.is_empty(), "{}: nothing to validate", doc.name());
    let schema = printed_schema(doc);
    let v = jsonschema::validator_for(&schema).expect("the schema compiles");
    for (i, inst) in instances.iter().enumerate() {
        let errors: Vec<String> = v
            .iter_errors(inst)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} output #{i} does not match its schema:\n{}",
            doc.name(),
            errors.join("\n")
        );
        if let Some(version) = inst.get("schema_version") {
            assert_eq!(version, SCHEMA_VERSION, "{} #{i}", doc.name());
        }
    }
}

/// Reads a document into its type and writes it back: the same JSON.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
    let typed: T = serde_json::from_value(v.clone()).expect("reads into the output type");
    assert_eq!(&serde_json::to_value(&typed).expect("serialises"), v);
}

fn stdout_json(args: &[&str]) -> Value {
    let out = cxl_trace(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn every_command_prints_a_schema_and_all_of_them_without_one() {
    let all = stdout_json(&["schema"]);
    for d in Document::ALL {
        assert!(all.get(d.name()).is_some(), "{} in `schema`", d.name());
        assert_eq!(
            printed_schema(d)["$id"],
            format!("cxl-trace/{}/v{SCHEMA_VERSION}", d.name())
        );
    }
    let bad = cxl_trace(&["schema", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn recordings_report_replay_export_and_diff_match_the_schema() {
    for name in ["v1-small.cxlt", "v1-timed.cxlt"] {
        let path = fixture(name);
        let p = path.to_str().unwrap_or("");
        let report = stdout_json(&["report", "--format", "json", p]);
        validate(Document::Report, std::slice::from_ref(&report));
        round_trip::<schema::Window>(&report);

        let out = cxl_trace(&["replay", "--no-tui", p]);
        assert_eq!(out.status.code(), Some(0), "replay: {}", stderr(&out));
        let lines = json_lines(&out);
        assert!(lines.len() >= 2, "start and summary at least");
        validate(Document::Replay, &lines);
        for l in &lines {
            round_trip::<Line>(l);
        }
        // The replay's summary is the report's window, with type `summary`.
        let last: schema::Window =
            serde_json::from_value(lines[lines.len() - 1].clone()).expect("summary");
        assert_eq!(last.kind, schema::LineKind::Summary);
        assert_eq!(
            last.faults,
            serde_json::from_value::<schema::Window>(report.clone())
                .expect("report")
                .faults
        );

        let out = cxl_trace(&["export", p, "--format", "jsonl"]);
        assert_eq!(out.status.code(), Some(0), "export: {}", stderr(&out));
        validate(Document::Export, &json_lines(&out));
    }
    let (a, b) = (fixture("v1-small.cxlt"), fixture("v1-timed.cxlt"));
    let diff = stdout_json(&[
        "diff",
        a.to_str().unwrap_or(""),
        b.to_str().unwrap_or(""),
        "--format",
        "json",
    ]);
    validate(Document::Diff, std::slice::from_ref(&diff));
    round_trip::<schema::DiffDoc>(&diff);
}

#[test]
fn topology_and_doctor_match_the_schema() {
    let topo = stdout_json(&["topology", "--json"]);
    validate(Document::Topology, std::slice::from_ref(&topo));
    round_trip::<schema::TopologyDoc>(&topo);
    let doctor = stdout_json(&["doctor", "--json"]);
    validate(Document::Doctor, std::slice::from_ref(&doctor));
    round_trip::<schema::Doctor>(&doctor);
}

/// Live: `top --no-tui` with the workload making faults, as root.
#[test]
fn live_top_lines_match_the_schema() {
    if !require_root("live_top_lines_match_the_schema") {
        return;
    }
    let out = cxl_trace(&[
        "top",
        "--no-tui",
        "--interval",
        "0.5",
        "--",
        WORKLOAD,
        "touch",
        "--pages",
        "20000",
    ]);
    assert_eq!(out.status.code(), Some(0), "top: {}", stderr(&out));
    let lines = json_lines(&out);
    assert!(lines.len() >= 2, "start and summary at least: {lines:?}");
    validate(Document::Top, &lines);
    for l in &lines {
        round_trip::<Line>(l);
    }
    let summary: schema::Window =
        serde_json::from_value(lines[lines.len() - 1].clone()).expect("summary");
    assert_eq!(summary.kind, schema::LineKind::Summary);
    assert!(summary.faults.total >= 20_000, "{}", summary.faults.total);
    assert!(summary.produced.is_some() && summary.errors.is_some());
}
