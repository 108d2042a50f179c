//! Every machine-readable output checked against the published JSON Schema
//! (`cxl-trace schema COMMAND`) with a validator, and read back into the output types:
//! from the golden recordings without privileges, and live as root.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use cxl_trace::model::schema::{self, Document, Line, SCHEMA_VERSION};
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

/// JSON lines of `top` or `replay`: valid, and each reads back into a [`Line`]; returns the
/// summary (the last line).
fn check_lines(doc: Document, lines: &[Value]) -> schema::Window {
    assert!(lines.len() >= 2, "start and summary at least: {lines:?}");
    validate(doc, lines);
    for l in lines {
        round_trip::<Line>(l);
    }
    let summary: schema::Window =
        serde_json::from_value(lines[lines.len() - 1].clone()).expect("summary");
    assert_eq!(summary.kind, schema::LineKind::Summary);
    summary
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
        // The replay's summary is the report's window, with type `summary`.
        let last = check_lines(Document::Replay, &json_lines(&out));
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
    let summary = check_lines(Document::Top, &json_lines(&out));
    assert!(summary.faults.total >= 20_000, "{}", summary.faults.total);
    assert!(summary.produced.is_some() && summary.errors.is_some());
}

/// `a.{b,c.{d,e}}` -> `a.b`, `a.c.d`, `a.c.e`.
fn expand(s: &str) -> Vec<String> {
    let Some(open) = s.find('{') else {
        return vec![s.to_string()];
    };
    let mut depth = 0;
    let mut close = open;
    for (i, ch) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let (head, inner, tail) = (&s[..open], &s[open + 1..close], &s[close + 1..]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .flat_map(|p| expand(&format!("{head}{p}{tail}")))
        .collect()
}

/// Whether `path` (dot-separated, `<x>` any key, `[]` array items) names something in
/// `schema`, following `$ref`s into `defs` and trying every branch of `anyOf`/`oneOf`/`allOf`.
fn resolves(schema: &Value, defs: &Value, path: &[&str]) -> bool {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or("");
        return resolves(&defs[name], defs, path);
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(k).and_then(Value::as_array) {
            if branches.iter().any(|b| resolves(b, defs, path)) {
                return true;
            }
        }
    }
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    if let Some(name) = first.strip_suffix("[]") {
        let Some(items) = schema["properties"]
            .get(name)
            .map(|p| resolve_items(p, defs))
        else {
            return false;
        };
        return items.is_some_and(|i| resolves(&i, defs, rest));
    }
    if first.contains('<') {
        // Any key: open maps, or maps keyed by an enum (every name and the pattern).
        let open = schema
            .get("additionalProperties")
            .is_some_and(|a| a.is_object() && resolves(a, defs, rest));
        let named = ["properties", "patternProperties"].iter().any(|k| {
            schema
                .get(*k)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty() && m.values().all(|v| resolves(v, defs, rest)))
        });
        return open || named;
    }
    schema["properties"]
        .get(*first)
        .is_some_and(|p| resolves(p, defs, rest))
}

fn resolve_items(p: &Value, defs: &Value) -> Option<Value> {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        return resolve_items(&defs[r.rsplit('/').next().unwrap_or("")], defs);
    }
    p.get("items").cloned()
}

/// The field table of `top --no-tui` in docs/json-output.md names only members the schema
/// has.
#[test]
fn documented_field_table_matches_the_schema() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/json-output.md"
    ))
    .expect("docs/json-output.md");
    let section = doc
        .split("## JSON output of `top --no-tui`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/json-output.md has the section");
    let schema = printed_schema(Document::Top);
    let defs = schema["$defs"].clone();
    let mut checked = 0;
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap_or("");
        let mut parent = String::new();
        for token in first.split('`').skip(1).step_by(2) {
            let full = match token.strip_prefix('.') {
                Some(rel) => format!("{parent}.{rel}"),
                None => token.to_string(),
            };
            if let Some((p, _)) = full.split_once('.') {
                parent = p.to_string();
            }
            for path in expand(&full) {
                let parts: Vec<&str> = path.split('.').collect();
                assert!(
                    resolves(&schema, &defs, &parts),
                    "docs/json-output.md names `{path}`, which the schema of `top` lacks"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} documented fields found");
}

#[test]
fn field_paths_expand() {
    assert_eq!(
        expand("a.{b,c.{d,e}}"),
        vec!["a.b".to_string(), "a.c.d".into(), "a.c.e".into()]
    );
    assert_eq!(expand("x"), vec!["x".to_string()]);
}

/// Every probe `doctor` reports is documented in docs/probes.md (by its tracepoint or
/// function name), so the reference cannot fall behind the probes.
#[test]
fn every_probe_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/probes.md"))
        .expect("docs/probes.md");
    let out = cxl_trace(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let probes = v["probes"].as_array().expect("probes");
    let mut checked = 0;
    for p in probes {
        let name = p["name"].as_str().expect("name");
        if name.starts_with("attach:") {
            continue;
        }
        let last = name.rsplit(':').next().unwrap_or(name);
        assert!(
            doc.contains(&format!("{last}`")),
            "docs/probes.md does not describe {name}"
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} probes");
}

/// Every subcommand `--help` lists is in the README's command table and has its row in
/// docs/commands.md (or, for `completions`, its paragraph in the README).
#[test]
fn every_command_is_documented() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let reference =
        std::fs::read_to_string(format!("{root}/docs/commands.md")).expect("docs/commands.md");
    let help = cxl_trace(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let commands: Vec<&str> = text
        .split("Commands:")
        .nth(1)
        .expect("a command list")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for c in commands {
        let in_table = readme
            .lines()
            .any(|l| l.starts_with("| `") && l.contains(&format!("`{c}")));
        assert!(in_table, "README's command table lacks {c}");
        let documented = reference.contains(&format!("cxl-trace {c}"))
            || readme.contains(&format!("cxl-trace {c}"));
        assert!(documented, "docs/commands.md does not describe {c}");
    }
}

/// docs/metrics.md's table is the exporter's catalogue: every family, its type, its labels.
#[test]
fn every_metric_is_documented() {
    use cxl_trace::model::metrics::{catalogue, Kind};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))
        .expect("docs/metrics.md");
    let want: Vec<String> = catalogue()
        .iter()
        .map(|f| {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let labels: Vec<String> = f.labels.iter().map(|l| format!("`{l}`")).collect();
            format!(
                "| `{}` | {kind} | {} | {} |",
                f.exposed_name(),
                labels.join(", "),
                f.help
            )
        })
        .collect();
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `cxl_trace_") || l.starts_with("| `process_"))
        .collect();
    assert_eq!(
        rows,
        want,
        "docs/metrics.md's table differs from the catalogue; it should read:\n{}",
        want.join("\n")
    );
}
