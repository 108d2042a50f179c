//! `export --format parquet` read by DuckDB (PyPI's `duckdb`, in the venv `cargo xtask setup`
//! makes at target/py): counts and sums by reason equal `report`'s, across two unioned
//! recordings too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod common;

use std::{path::Path, process::Command};

use common::{cxl_trace, stderr, u};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/two-tier.cxlt"
);
const V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/v1-timed.cxlt"
);
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/py/bin/python");

fn export(rec: &str, dir: &Path) {
    let out = cxl_trace(&[
        "export",
        rec,
        "--format",
        "parquet",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Runs SQL in DuckDB; the result as JSON rows.
fn duckdb(sql: &str) -> Vec<Vec<Value>> {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: `cargo xtask setup` makes the venv with duckdb"
    );
    let script = "import duckdb, json, sys\nprint(json.dumps(duckdb.sql(sys.argv[1]).fetchall()))";
    let out = Command::new(PYTHON)
        .args(["-c", script, sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report(rec: &str) -> Value {
    let out = cxl_trace(&["report", rec, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn duckdb_counts_what_report_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    export(FIXTURE, &a);
    let r = report(FIXTURE);
    let ev = a.join("events.parquet");
    let ev = ev.display();
    let faults = duckdb(&format!("select count(*) from '{ev}' where type = 'fault'"));
    assert_eq!(faults[0][0], r["faults"]["total"]);
    let all = duckdb(&format!("select count(*) from '{ev}'"));
    assert_eq!(all[0][0], r["events"]["received"]);
    let by_reason = duckdb(&format!(
        "select reason, sum(succeeded)::bigint, sum(failed)::bigint from '{ev}' where type = 'migrate' group by reason order by reason"
    ));
    let want = r["migrations"]["by_reason"].as_object().unwrap();
    assert_eq!(by_reason.len(), want.len());
    for row in &by_reason {
        let w = &want[row[0].as_str().unwrap()];
        assert_eq!(
            (u(&row[1]), u(&row[2])),
            (u(&w["pages_succeeded"]), u(&w["pages_failed"]))
        );
    }
    // The interval table adds up to the run.
    let iv = a.join("intervals.parquet");
    let sums = duckdb(&format!(
        "select sum(promoted_pages)::bigint, sum(demoted_pages)::bigint, count(*) from '{}'",
        iv.display()
    ));
    assert_eq!(sums[0][0], r["migrations"]["promotions"]["pages"]);
    assert_eq!(sums[0][1], r["migrations"]["demotions"]["pages"]);
    assert!(u(&sums[0][2]) > 5);
    // Every interval row carries its whole window document.
    let windows = duckdb(&format!(
        "select count(*) from '{}' where json_extract_string(document, '$.type') = 'interval'",
        iv.display()
    ));
    assert_eq!(windows[0][0], sums[0][2]);
    // The header is the key-value metadata.
    let meta = duckdb(&format!(
        "select decode(value) from parquet_kv_metadata('{ev}') where decode(key) = 'cxl_trace.header'"
    ));
    let header: Value = serde_json::from_str(meta[0][0].as_str().unwrap()).unwrap();
    assert_eq!(header["kernel"], r["host"]["kernel"]);
}

#[test]
fn recordings_union_by_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    export(FIXTURE, &tmp.path().join("a"));
    export(V1, &tmp.path().join("b"));
    let glob = tmp.path().join("*/events.parquet");
    let rows = duckdb(&format!(
        "select kernel, count(*) filter (where type = 'fault') from read_parquet('{}', union_by_name = true) group by kernel order by kernel",
        glob.display()
    ));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let mut want: Vec<(String, u64)> = [FIXTURE, V1]
        .iter()
        .map(|f| {
            let r = report(f);
            (
                r["host"]["kernel"].as_str().unwrap().to_string(),
                u(&r["faults"]["total"]),
            )
        })
        .collect();
    want.sort();
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), u(&r[1])))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn parquet_needs_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cxl_trace(&["export", FIXTURE, "--format", "parquet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("-o DIR"));
    // An existing directory is never written into.
    let out = cxl_trace(&[
        "export",
        FIXTURE,
        "--format",
        "parquet",
        "-o",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}
