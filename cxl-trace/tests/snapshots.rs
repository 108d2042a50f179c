//! Output is an API: the text and JSON of `report` on the golden recordings and of
//! `topology` on the sysfs fixtures are pinned as snapshots (insta), so any change of output
//! shows up as a reviewed diff of `tests/snapshots/*.snap` (`cargo insta review`, or delete
//! the file and run the test to write it anew).

mod common;

use common::*;

const RECORDINGS: [&str; 2] = ["v1-small", "v1-timed"];

fn golden(name: &str) -> String {
    format!(
        "{}/tests/fixtures/recordings/{name}.cxlt",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Stdout of a command that must succeed, with the checkout's path made stable.
fn run(args: &[&str]) -> String {
    let out = cxl_trace(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).replace(env!("CARGO_MANIFEST_DIR"), "<crate>")
}

#[test]
fn report_text_of_the_golden_recordings() {
    for name in RECORDINGS {
        let path = golden(name);
        insta::assert_snapshot!(format!("report_text_{name}"), run(&["report", &path]));
    }
}

#[test]
fn report_json_of_the_golden_recordings() {
    for name in RECORDINGS {
        let path = golden(name);
        insta::assert_snapshot!(
            format!("report_json_{name}"),
            run(&["report", "--format", "json", &path])
        );
    }
}

#[test]
fn topology_of_the_sysfs_fixtures() {
    for name in ["two-tier", "cxl"] {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name);
        let t = cxl_trace::model::topology::Topology::read(&root.join("sys"), &root.join("proc"));
        insta::assert_snapshot!(
            format!("topology_text_{name}"),
            cxl_trace::output::topology::to_text(&t)
        );
        insta::assert_snapshot!(
            format!("topology_json_{name}"),
            serde_json::to_string_pretty(&t).expect("serialises")
        );
    }
}
